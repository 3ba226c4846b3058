"""Build and grade the Neural Networks for Engineers assignments in a sandbox.

Modules, one job each:
  config       grading.yml, validated          data         datasets/ and their checksums
  build        otter assign, reproducibly      submissions  reading submitted files
  lms          Canvas/Gradescope downloads     plan         which cells run, where probes go
  sandbox      the isolated process            runner       runs cells inside the sandbox
  wire         the plain-data channel          checks       the verdict API for hidden checks
  grade        orchestration, --reuse          results      result files, CSV, feedback
  report       HTML report and CSV exports     release      the student release
  gradescope   the Gradescope autograder zip   cli          `python -m autograder <verb>`
"""
