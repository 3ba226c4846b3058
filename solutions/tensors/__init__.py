"""The tensors assignment's checks: reference.py (the chapter's reference modules and seeded runs),
probes.py (run in the sandbox), verdicts.py (the grade) and calibrate.py (thresholds and
tolerances). See autograder/checks.py for what each file provides."""
