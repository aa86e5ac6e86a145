"""Models of the kernel's kernel/*.c files (fork).
"""
