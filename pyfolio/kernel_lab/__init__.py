"""The kernel lab: the book's scenarios on the reader's own Linux kernel, beside the simulator.

Layer 5 (see DESIGN.md): readers of /proc and /sys (:mod:`.readers`), scenarios and the
observation record (:mod:`.scenarios`), backends that run a scenario on the simulator or
on the running kernel (:mod:`.backends`), and the comparison and recorded data
(:mod:`.compare`). The lab touches only memory of processes it starts; a setting a
scenario needs (an mTHP size) is written for the length of the run and restored; its one
other global action is ``echo 2 > /proc/sys/vm/drop_caches``.
"""

from pyfolio.kernel_lab.backends import KernelBackend, Observations, SimulatorBackend
from pyfolio.kernel_lab.readers import (
    Unavailable,
    availability,
    kpagecount,
    kpageflags,
    pagemap,
    smaps,
    thp_settings,
    vmstat,
)
from pyfolio.kernel_lab.scenarios import SCENARIOS, Scenario, Step

__all__ = ["Unavailable", "pagemap", "kpageflags", "kpagecount", "smaps", "vmstat",
           "thp_settings", "availability", "Step", "Scenario", "SCENARIOS",
           "SimulatorBackend", "KernelBackend", "Observations"]
