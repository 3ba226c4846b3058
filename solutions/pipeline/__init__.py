"""The pipeline assignment's checks: reference.py (the prompt's datasets, optimisation, epoch
functions, early-stopping training and focal loss), probes.py (run in the sandbox), verdicts.py
(the grade) and calibrate.py (thresholds and tolerances). See autograder/checks.py for what each
file provides."""
