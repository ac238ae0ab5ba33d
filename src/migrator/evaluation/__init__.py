"""Stage 4, evaluation: policies (ours and the baselines) replayed over traces and graded.

``policy`` (interface and registry), ``planning_policies`` (migrator, oracle, static),
``baselines`` (Ekya, Astraea, PARIS), ``simulate`` (trace replay), ``comparison``
(several policies and seeds), ``plots``. Uses planning and the stages below it.
"""
