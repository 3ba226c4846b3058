"""The spiral assignment's checks: reference.py (the reference SpiralNet and training run),
probes.py (run in the sandbox), verdicts.py (the grade) and calibrate.py (thresholds and
tolerances). See autograder/checks.py for what each file provides."""
