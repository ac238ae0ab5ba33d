"""Stage 3, planning: from a scenario and the observed state to a plan.

``planner`` (``Planner``: build in C++, solve with HiGHS, decode), ``planner_problem`` (the
problem as arrays), ``greedy`` (starting plans), ``decompose`` and ``split_bound`` (the
per-GPU split and its bound), ``retraining`` (the retraining pass), ``highs`` (the one place
HiGHS instances are made), ``master`` (the program as a configuration master, solved by
column generation; not yet run by the planner), ``_ilp_reference`` (the program on highspy's
modelling API, for tests). Uses workload and geometry.
"""
