"""Models of the kernel's include/ headers: their inline helpers and structs.
"""
