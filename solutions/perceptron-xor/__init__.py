"""The perceptron-xor assignment's checks: reference.py (the regression loop, the perceptron, the 2-4-1
network, train_step and the AND and XOR recipes), probes.py (run in the sandbox), verdicts.py (the
grade) and calibrate.py (thresholds and tolerances). See autograder/checks.py for what each file
provides."""
