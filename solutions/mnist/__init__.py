"""The mnist assignment's checks: reference.py (the prompt's MNISTNet, architectures and training
runs), probes.py (run in the sandbox), verdicts.py (the grade) and calibrate.py (thresholds and
tolerances). See autograder/checks.py for what each file provides."""
