"""Models of x86-64's page-table code: entry bits, accessors, the swap-entry layout.
"""
