"""Models of the kernel's fs/ code.
"""
