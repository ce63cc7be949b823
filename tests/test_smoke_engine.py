from engine import Phase, Session


def test_first_iteration_runs_in_order():
    s = Session()
    phases = [s.run_next().phase for _ in range(6)]
    assert phases == [
        Phase.DEFINE,
        Phase.FORWARD,
        Phase.LOSS,
        Phase.ZERO_GRAD,
        Phase.BACKWARD,
        Phase.STEP,
    ]
