// Intentionally empty: lattq_core_shared_bench only re-exports the static core (whole archive).
