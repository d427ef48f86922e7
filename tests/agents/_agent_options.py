"""Options that keep every stock agent fast on a small space (shared by the tests)."""

#: every stock agent with options that keep it fast on a small space
STOCK = {
    "random": {},
    "exhaustive": {},
    "evolution": {"population_size": 4, "tournament_size": 2},
    "tpe": {"n_startup_trials": 3},
    "bilstm": {"hidden_size": 16},
    "ppo": {},
    "a2c": {},
    "maskable_ppo": {},
}

#: multi-fidelity agents: their budget is compute, not target evaluations (their own tests)
MULTI_FIDELITY = {"successive_halving": {}, "hyperband": {}, "screened_evolution": {}}
