"""Models of fs/ext4: the disk file system whose page cache holds large folios (6.16+).
"""
