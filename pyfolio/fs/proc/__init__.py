"""Models of fs/proc: what /proc/PID/pagemap, /proc/PID/smaps, /proc/kpageflags and
/proc/kpagecount show.
"""
