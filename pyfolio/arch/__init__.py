"""Models of the kernel's arch/ code.
"""
