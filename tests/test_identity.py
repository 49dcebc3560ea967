"""Spike identity (issue 17 item 2): outliers matched across analyses by their left and right vectors, not by rank."""

from __future__ import annotations

import torch

from spikelearn.functional import identity
from spikelearn.functional.engine import SpectralTracker
from spikelearn.functional.inputs import EngineConfig
from spikelearn.functional.identity import match_outliers


def _trajectory(steps: int = 8, N: int = 300, d: int = 200):
    """W_t = X + Σ_i s_i(t) u_i v_i^T over a fixed bulk X, four planted directions: A falls from 5 to 2 while B rises
    from 2 to 5 (they cross between t = 3 and 4, 0.43 apart on either side), C (6.5) is born at t = 2, D (8) sinks
    back into the bulk after t = 5. Returns the weights and the right directions V (d, 4) in the order A, B, C, D."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    U = torch.linalg.qr(torch.randn(N, 4, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d, 4, generator=g, dtype=torch.float64))[0]
    Ws = []
    for t in range(steps):
        row = (5.0 - 3.0 * t / (steps - 1), 2.0 + 3.0 * t / (steps - 1), 6.5 if t >= 2 else 0.0, 8.0 if t <= 5 else 0.0)
        Ws.append(X + sum(s * torch.outer(U[:, i], V[:, i]) for i, s in enumerate(row)))
    return Ws, V


def _direction(V, R, j) -> int:
    return int((V.T @ R[:, j]).abs().argmax())


def test_all_unique():
    assert len(identity.__all__) == len(set(identity.__all__))


def _run(Ws, split: int | None = None):
    tracker, records, directions = SpectralTracker(EngineConfig(k=16)), [], []
    for t, W in enumerate(Ws):
        if split is not None and t == split:
            state = tracker.state_dict()
            tracker = SpectralTracker(EngineConfig(k=16))
            tracker.load_state_dict(state)
        analysis = tracker.update(W, t)
        records.append(analysis.record(step=t))
        directions.append(analysis.spectrum.right[:, : analysis.outliers.count])
    return records, directions


def test_each_id_stays_with_its_vectors_when_values_cross_and_spikes_are_born_and_die():
    Ws, V = _trajectory()
    records, right = _run(Ws)
    owner: dict[int, int] = {}  # id -> planted direction
    for record, R in zip(records, right):
        for j, spike_id in enumerate(record["outlier_ids"]):
            assert owner.setdefault(spike_id, _direction(V, R, j)) == _direction(V, R, j), (record["step"], spike_id)
    assert sorted(owner.values()) == [0, 1, 2, 3]  # four planted directions, four ids
    born = {owner[i]: b for r in records for i, b in zip(r["outlier_ids"], r["outlier_births"])}
    assert born == {0: 0, 1: 0, 2: 2, 3: 0}  # C born at step 2
    ended = [e for r in records for e in r["ended_outliers"]]
    assert [(owner[e["id"]], e["birth"], e["last_step"]) for e in ended] == [(3, 0, 5)]  # D's last step is 5


def test_ranks_swap_but_ids_do_not():
    Ws, V = _trajectory()
    records, right = _run(Ws)

    def rank_and_id(t: int, direction: int) -> tuple[int, int]:
        j = next(j for j in range(right[t].shape[1]) if _direction(V, right[t], j) == direction)
        return j, records[t]["outlier_ids"][j]

    (rank_a0, id_a0), (rank_b0, id_b0) = rank_and_id(0, 0), rank_and_id(0, 1)
    (rank_a7, id_a7), (rank_b7, id_b7) = rank_and_id(7, 0), rank_and_id(7, 1)
    assert rank_a0 < rank_b0 and rank_a7 > rank_b7  # A above B at the start, below at the end
    assert (id_a0, id_b0) == (id_a7, id_b7)


def test_a_resumed_tracker_gives_the_ids_of_an_uninterrupted_one():
    Ws, _ = _trajectory()
    straight, _ = _run(Ws)
    resumed, _ = _run(Ws, split=4)
    assert [r["outlier_ids"] for r in resumed] == [r["outlier_ids"] for r in straight]
    assert [r["ended_outliers"] for r in resumed] == [r["ended_outliers"] for r in straight]


def test_an_unmatched_outlier_gets_a_new_id():
    e = torch.eye(5, dtype=torch.float64)
    first, state = match_outliers(e[:, :2], e[:, :2], None, step=0)
    second, _ = match_outliers(e[:, [2]], e[:, [2]], state, step=1)  # an unrelated direction
    assert (second.ids, second.births, sorted(second.ended)) == ([2], [1], [0, 1])


def test_sign_flips_do_not_break_a_match():
    e = torch.eye(5, dtype=torch.float64)
    _, state = match_outliers(e[:, :2], e[:, :2], None, step=0)
    second, _ = match_outliers(-e[:, :2], -e[:, :2], state, step=1)
    assert second.ids == [0, 1] and second.ended == []


def test_the_report_draws_the_spike_trajectories(tmp_path):
    import json

    from spikelearn.report import main as report_main

    Ws, V = _trajectory()
    records, _ = _run(Ws)
    B = V[:, :2]  # the report's alignment panel: A and B as target directions
    run = tmp_path / "run"
    run.mkdir()
    tracker, lines = SpectralTracker(EngineConfig(k=16)), []
    from spikelearn.functional.inputs import TheoryInputs

    for t, W in enumerate(Ws):
        lines.append(json.dumps(tracker.update(W, t, TheoryInputs(B=B)).record(step=t, param="W", N=300, d=200,
                                                                               aspect_ratio=1.5)))
    (run / "spectra.jsonl").write_text("\n".join(lines) + "\n")
    report_main([str(run)])
    page = (run / "report.html").read_text()
    assert "<h2>Spike trajectories</h2>" in page
