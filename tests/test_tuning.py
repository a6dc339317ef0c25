"""The LM-weight search: the grid, greedy's point, and growth past an edge that holds the best point."""

from asr.inference.tuning import GREEDY_POINT, best_trial, search


def _bowl(lm_weight: float, word_score: float, at=(5.0, -4.0)) -> tuple[float, int]:
    """Errors that fall towards ``at``: a stand-in for decoding a dev set."""
    errors = int(10 * ((lm_weight - at[0]) ** 2 + (word_score - at[1]) ** 2))
    return errors / 1000, errors


GRID = dict(lm_weights=[0.0, 1.0, 2.0, 3.0], word_scores=[-2.0, -1.0, 0.0, 1.0])


def test_a_best_point_inside_the_grid_tries_the_grid_and_greedys_point_only():
    trials = search(lambda w, s: _bowl(w, s, at=(2.0, -1.0)), **GRID)
    points = [(t.lm_weight, t.word_score) for t in trials]
    assert points[0] == GREEDY_POINT and len(points) == len(set(points)) == 16
    assert (best_trial(trials).lm_weight, best_trial(trials).word_score) == (2.0, -1.0)


def test_a_best_point_on_the_edge_grows_the_grid_at_its_spacing_towards_the_optimum():
    tried = []
    trials = search(_bowl, **GRID, extend=3, on_trial=tried.append)
    assert tried == trials
    best = best_trial(trials)
    assert (best.lm_weight, best.word_score) == (5.0, -4.0), "three steps past (3, -2) at spacing 1"
    assert len(trials) < 16 + 3 * 8, "each step tries the best point's neighbours, not whole rows"
    assert {(4.0, -3.0), (5.0, -4.0)} <= {(t.lm_weight, t.word_score) for t in trials}


def test_growth_stops_at_extend_steps_and_extend_0_is_the_grid_as_given():
    assert len(search(_bowl, **GRID, extend=0)) == 16
    best = best_trial(search(_bowl, **GRID, extend=1))
    assert (best.lm_weight, best.word_score) == (4.0, -3.0)


def test_word_scores_grow_upwards_and_lm_weights_never_below_zero():
    trials = search(lambda w, s: _bowl(w, s, at=(0.0, 3.0)), **GRID)
    assert min(t.lm_weight for t in trials) == 0.0
    best = best_trial(trials)
    assert (best.lm_weight, best.word_score) == (0.0, 3.0)
    lexicon_only = search(lambda w, s: _bowl(w, s, at=(0.0, -3.5)), [0.0], [-2.0, -1.0, 0.0])
    assert {t.lm_weight for t in lexicon_only} == {0.0}
    assert best_trial(lexicon_only).word_score in (-3.0, -4.0)


def test_tune_lm_refuses_a_negative_extend_in_one_line(capsys):
    from asr.cli.tune_lm import main as tune_lm_main

    assert tune_lm_main(["model.ckpt", "dev.jsonl", "--lm", "lm.arpa", "--extend", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "tune_lm.py: error: --extend -1: must be 0 (the grid as given) or more"
