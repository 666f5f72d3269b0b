# Placeholder: the board set-up (identity, flash, peripherals) arrives in the next step.


def setup(cfg, ctl):
    pass
