"""Models of the kernel's lib/ code: the test_hmm driver (dmirror).
"""
