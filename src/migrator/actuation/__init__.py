"""Stage 5, actuation: applying plans to GPUs, and surviving failure while doing it.

``reconfig`` (layout diff -> ordered, make-before-break actions), ``journal`` (written before
each action), ``nvml`` (the NVML backend), ``emulator`` (the in-process NVML the tests use),
``migparted`` (mig-parted files), ``controller`` (the online loop). Uses planning and the
stages below it; nothing of evaluation.
"""
