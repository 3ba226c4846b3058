"""Build and grade the Neural Networks for Engineers assignments in a sandbox.

Modules, one job each: `config` (grading.yml), `data` (datasets/), `build` (otter assign),
`submissions` (reading files), `plan` (cells to run), `sandbox` + `runner` (isolated execution),
`wire` (plain-data channel), `checks` (verdict API), `grade` (orchestration), `results` (CSV/JSON).
"""
