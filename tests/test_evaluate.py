from __future__ import annotations

import math

import numpy as np
import pytest

from netae.evaluate import average_precision, evaluate_scores, roc_auc, tpr_at_fpr


def test_hand_computed_case():
    # benign: 0.1 0.2 0.3 0.4 ; attacks: a=0.35, a=0.9, b=0.05
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.9, 0.05])
    matched = [frozenset({"benign"})] * 4 + [frozenset({"a"}), frozenset({"a"}), frozenset({"b"}), None][:3]
    matched.append(None)
    scores = np.append(scores, 99.0)  # unmatched flow: left out
    ev = evaluate_scores(scores, matched, threshold=0.32)
    assert ev.n_unmatched == 1 and ev.n_benign == 4 and ev.n_attack == 3
    # Pairs (attack > benign): 0.35 beats 3, 0.9 beats 4, 0.05 beats 0 -> 7 of 12.
    assert ev.roc_auc == pytest.approx(7 / 12)
    assert ev.per_attack["a"]["roc_auc"] == pytest.approx(7 / 8)
    assert ev.per_attack["b"]["roc_auc"] == pytest.approx(0.0)
    assert ev.per_attack["a"]["flagged"] == 2 and ev.per_attack["b"]["flagged"] == 0
    assert ev.benign_fpr_at_threshold == pytest.approx(0.25)
    # Ranked: 0.9(A) 0.4 0.35(A) 0.3 0.2 0.1 0.05(A): AP = (1/1 + 2/3 + 3/7) / 3
    assert ev.average_precision == pytest.approx((1 + 2 / 3 + 3 / 7) / 3)
    # 0% of 4 benign allowed at 1% FPR: only 0.9 is above every benign score.
    assert ev.tpr_at_1pct_fpr == pytest.approx(1 / 3)


def test_ties_count_half_and_degenerate_cases():
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([1.0]), np.array([True])))
    assert average_precision(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == pytest.approx(1.0)
    assert tpr_at_fpr(np.arange(200.0), np.arange(200) >= 150, 0.02) == pytest.approx(1.0)


def test_incident_ranks_take_each_attacks_best_incident_and_count_benign_ones_above():
    from netae.evaluate import format_incident_ranks, incident_ranks
    from netae.incidents import Incidents

    z = np.zeros(4, np.int64)
    # flows 0-1 in incident 0 (rank 1), flow 2 in rank 2, flow 3 in rank 3, flows 4-5 in rank 4, flow 6 in none
    inc = Incidents(
        flow_incident=np.array([0, 0, 1, 2, 3, 3, -1]), ids=("a", "b", "c", "d"), kind=("k",) * 4, rep=z,
        n_flows=z, n_srcs=z, n_dsts=z, n_dports=z, first_ns=z, last_ns=z, score=np.zeros(4, np.float32),
        priority=np.zeros(4), sentence=("",) * 4,
    )  # fmt: skip
    b, scan, exfil = frozenset({"benign"}), frozenset({"scan"}), frozenset({"exfil"})
    matched = [scan, None, b, exfil, scan, b, frozenset({"tunnel"})]
    r = incident_ranks(matched, inc)
    assert r.best == {"exfil": 3, "scan": 1, "tunnel": None}  # an unflagged attack has no incident
    assert r.benign_only == (2,)  # rank 4 mixes benign and scan flows: not benign-only
    assert r.benign_above_attacks == 1  # rank 2 is above exfil's best, rank 3
    text = format_incident_ranks(r)
    assert "tunnel" in text and "none" in text and "1 above" in text
    assert r.to_dict()["best_rank_per_attack"]["exfil"] == 3
