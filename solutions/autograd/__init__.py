"""The autograd assignment's checks: reference.py (the expression-program interpreter, the
prompt's engine and its PyTorch float64 counterparts), probes.py (run in the sandbox), verdicts.py
(the grade) and calibrate.py (thresholds and tolerances). See autograder/checks.py for what each
file provides."""
