"""The evaluation harness: strategies on an unseen scenario folder, DESIGN.md's JSON, CLI outputs, bad clips."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

import scenarios
from feedback_env.pipeline import EnhancementPipeline, transparent_params
from scenarios import evaluate
from scenarios.harness import iterations_to_reach, render_schedule, run_evaluation
from scenarios.strategies import make_strategy
from tests.conftest import si_sdr_db

RATE = 16000
SECONDS = 2.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory, builtin):
    """An unseen set: two 2 s excerpts of built-in clips (one without its clean reference) and a missing file."""
    root = tmp_path_factory.mktemp("unseen")
    (root / "audio").mkdir()
    n = int(SECONDS * RATE)
    entries = []
    for clip_id, with_clean in (("white_snr+5_f3", True), ("hum60_snr-5_f3", False)):
        clip = builtin[clip_id]
        sf.write(root / "audio" / f"{clip_id}_noisy.wav", clip.noisy[:n], RATE, subtype="FLOAT")
        entry = {"id": clip_id, "noisy": f"audio/{clip_id}_noisy.wav", "tags": dict(clip.tags)}
        if with_clean:
            sf.write(root / "audio" / f"{clip_id}_clean.wav", clip.clean[:n], RATE, subtype="FLOAT")
            entry["clean"] = f"audio/{clip_id}_clean.wav"
        entries.append(entry)
    entries.append({"id": "gone", "noisy": "audio/gone.wav", "tags": {"noise": "white"}})
    (root / "manifest.json").write_text(json.dumps({"name": "unseen", "sample_rate": RATE, "clips": entries}))
    return root


def write_excerpts(root, builtin, ids, seconds=1.0, extra=()):
    """A small set in ``root``: ``seconds`` of each built-in clip in ``ids`` (with its clean reference),
    plus the manifest entries ``extra`` as they are."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    n = int(seconds * RATE)
    entries = []
    for clip_id in ids:
        clip = builtin[clip_id]
        sf.write(root / "audio" / f"{clip_id}_noisy.wav", clip.noisy[:n], RATE, subtype="FLOAT")
        sf.write(root / "audio" / f"{clip_id}_clean.wav", clip.clean[:n], RATE, subtype="FLOAT")
        entries.append({"id": clip_id, "noisy": f"audio/{clip_id}_noisy.wav", "clean": f"audio/{clip_id}_clean.wav",
                        "tags": dict(clip.tags)})  # fmt: skip
    (root / "manifest.json").write_text(json.dumps({"name": root.name, "clips": entries + list(extra)}))
    return root


def failing_on(monkeypatch, name, clip_ids):
    """Make strategy ``name`` raise on the clips ``clip_ids`` (as a missing extra or a bad model would)."""
    from scenarios import harness

    real = harness.make_strategy

    class Flaky:
        def __init__(self, inner):
            self.inner, self.adaptive, self.relative_cost = inner, inner.adaptive, inner.relative_cost

        def run(self, clip, budget, seed, context):
            if clip.id in clip_ids:
                raise RuntimeError(f"simulated failure on {clip.id}")
            return self.inner.run(clip, budget, seed, context)

    monkeypatch.setattr(harness, "make_strategy", lambda n: Flaky(real(n)) if n == name else real(n))


def test_iterations_to_reach_uses_a_moving_mean():
    curve = [0.0] * 10 + [1.0] * 10
    assert iterations_to_reach(curve, 0.5, window=4) == 12  # mean of iterations 9..12 first reaches 0.5
    assert iterations_to_reach(curve, 2.0, window=4) is None
    assert iterations_to_reach([0.0, float("nan"), 1.0, 1.0], 1.0, window=2) == 4  # a failed iteration never counts


def test_unscored_iterations_are_skipped_and_failed_ones_still_never_count():
    """Guards review S#1b: a chunk the loop does not score (too short, silent reference) is null in every
    pass; it made every window of the moving mean -inf, so "iterations to 95 %" was never reached. Unscored
    iterations are left out of the mean; a failed one still makes its window miss."""
    curve = [0.0, None, 1.0, 1.0, None, 1.0]
    assert iterations_to_reach(curve, 1.0, window=2, unscored=[2, 5]) == 3
    assert iterations_to_reach(curve, 1.0, window=2, unscored=[5]) == 4  # iteration 2 failed
    assert iterations_to_reach([None, None, 1.0], 0.5, window=2, unscored=[1, 2]) == 3  # no scored value: not reached


def test_every_strategy_is_scored_on_the_same_chunks_of_a_clip_with_a_short_tail(builtin, tmp_path):
    """Guards review S#1: on a 1.55 s clip (chunks of 0.5, 0.5, 0.5 and 0.05 s) the static runs and
    noisereduce scored the 0.05 s chunk, which the loop never scores: "of oracle" compared a loop over
    3 chunks with defaults and oracle over 4, and the loop's iterations to 95 % were never reached."""
    from scenarios.harness import add_oracle_fractions, clip_context, evaluate_clip

    root = write_excerpts(tmp_path / "ragged", builtin, ["white_snr-5_m1"], seconds=1.55)
    clip = scenarios.load(root)[0]
    entries, _ = evaluate_clip(clip, ["defaults", "spsa", "noisereduce"], 8, 0, 0.5, ())
    for name, entry in entries.items():
        assert "error" not in entry, entry
        assert [r is None for r in entry["curve"]] == [False, False, False, True] * 2, name
        assert entry["unscored_iterations"] == [4, 8], name
        assert entry["objective"] == pytest.approx(np.mean(entry["curve"][4:7])), name
    entries["oracle"] = {"objective": entries["spsa"]["objective"], "curve": entries["spsa"]["curve"],
                         "unscored_iterations": [4, 8]}  # fmt: skip
    add_oracle_fractions(entries, clip_context(clip, 0.5), 8)
    assert entries["spsa"]["fraction_of_oracle"] == pytest.approx(1.0)
    assert entries["spsa"]["iterations_to_95"] is not None


def test_noisereduce_is_scored_on_the_chunks_played_like_every_strategy(builtin):
    """Guards review S#3: with a budget shorter than one pass, noisereduce's objective was its mean over every
    chunk of the clip while the others' (and the oracle's) is over the chunks played."""
    from scenarios.harness import clip_context

    clip = builtin["white_snr+5_f3"]  # 4 s: 8 chunks
    run = make_strategy("noisereduce").run(clip, 3, 0, clip_context(clip, 0.5))
    assert len(run.curve) == 3 and run.objective == pytest.approx(np.mean(run.curve))


def test_a_static_schedule_renders_what_the_pipeline_gives_the_whole_clip(builtin):
    clip = builtin["white_snr+5_f3"]
    params = {"nr_oversubtraction": 2.0, "highpass_hz": 120.0}
    rendered = render_schedule(clip.noisy, [params], 8000, RATE)
    whole = EnhancementPipeline(RATE).process_clip(clip.noisy, {**EnhancementPipeline(RATE).space.defaults(), **params})
    assert rendered.shape == clip.noisy.shape
    np.testing.assert_allclose(rendered[8000:], whole[8000:], atol=1e-4)
    bypass = render_schedule(clip.noisy, [transparent_params()], 8000, RATE)
    assert si_sdr_db(bypass, clip.noisy) > 50


def test_unknown_strategies_fail_before_any_work():
    with pytest.raises(ValueError, match="unknown strategy 'ucb9'"):
        make_strategy("ucb9")


def test_a_strategy_with_options_gives_them_to_its_update_strategy_under_its_own_name(builtin):
    variant = make_strategy("spsa:perturbation=0.15,design=hadamard,pairs=4")
    assert variant.name == "spsa:perturbation=0.15,design=hadamard,pairs=4"
    gradient = variant.make_loop(builtin["white_snr+10_f2"], 0).strategy("gradient")
    assert (gradient.perturbation, gradient.design, gradient.pairs) == (0.15, "hadamard", 4)
    assert make_strategy("thompson:seed=3").loop_options["strategy_options"] == {"bandit": {"policy": "thompson", "seed": 3}}
    arms = make_strategy('ucb:presets=["gentle", "voice_focus"],seed=2').make_loop(builtin["white_snr+10_f2"], 0)
    assert arms.strategy("bandit").presets == ("gentle", "voice_focus")  # a JSON list holds its commas


@pytest.mark.parametrize("name, named", [
    ("spsa:perturbation=2", "need 0 < perturbation <= 1"),
    ("spsa:perturbaton=0.1", "unexpected keyword argument 'perturbaton'; its options: perturbation, pairs"),
    ("spsa:perturbation", "'perturbation' is not key=value"),
    ("spsa:pairs=2,pairs=3", "option 'pairs' given twice"),
    ("spsa:perturbation=0.1,,pairs=3", "'' is not key=value"),
    ('ucb:presets=["gentle", "loud"]', "loud"),
    ("bypass:seed=1", "'bypass' has no update strategy"),
    ("nope:seed=1", "unknown strategy 'nope'"),
])  # fmt: skip
def test_strategy_options_that_are_wrong_fail_before_any_work_naming_what(name, named, tmp_path, capsys):
    assert evaluate.main(["builtin", "--strategy", "defaults", "--strategy", name, "--json", str(tmp_path / "r.json")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_variants_of_one_strategy_compare_in_one_run(tmp_path):
    out = tmp_path / "r.json"
    names = ("spsa", "spsa:perturbation=0.3")
    argv = ["builtin", "--clip", "white_snr+10_f2", "--budget", "4", "--json", str(out), "--no-progress"]
    assert evaluate.main([*argv, *(f"--strategy={n}" for n in names)]) == 0
    clips = json.loads(out.read_text())["strategies"]
    first, second = (clips[n]["clips"]["white_snr+10_f2"]["curve"] for n in names)
    assert first[0] == second[0] and first[1:] != second[1:]  # the same start; then each its own probes


def test_the_harness_runs_every_strategy_on_an_unseen_folder(folder):
    names = ["bypass", "defaults", "spsa", "ucb", "noisereduce"]
    budget = 12
    result, _ = run_evaluation(str(folder), names, budget, progress=False)
    assert set(result["strategies"]) == set(names) and result["clips"] == 2
    assert result["sample_rate"] == 16000 and result["pesq_mode"] == "wide-band (P.862.2)"  # PESQ NB and WB differ
    assert "gone" in result["unreadable_clips"] and "gone.wav" in result["unreadable_clips"]["gone"]
    for name in names:
        s = result["strategies"][name]
        assert set(s["clips"]) == {"white_snr+5_f3", "hum60_snr-5_f3"}, s.get("errors")
        for clip_id, entry in s["clips"].items():
            assert "error" not in entry, entry.get("error")
            assert len(entry["curve"]) == budget and np.all(np.isfinite(entry["curve"]))
            assert "iterations_to_95" in entry and np.isfinite(entry["final"]["wada_snr"])
        # intrusive metrics only where there is a clean reference
        assert {"si_sdr", "pesq", "stoi", "estoi"} <= set(s["clips"]["white_snr+5_f3"]["final"])
        assert "si_sdr" not in s["clips"]["hum60_snr-5_f3"]["final"]
        assert s["mean"]["si_sdr"] == pytest.approx(s["clips"]["white_snr+5_f3"]["final"]["si_sdr"])
        assert s["wall_seconds"] == pytest.approx(sum(c["wall_seconds"] for c in s["clips"].values())) and s["wall_seconds"] > 0
    strategies = result["strategies"]
    noisy_si_sdr = result["input"]["clips"]["white_snr+5_f3"]["si_sdr"]
    assert strategies["bypass"]["mean"]["si_sdr"] == pytest.approx(noisy_si_sdr, abs=0.05)
    assert strategies["defaults"]["mean"]["si_sdr"] > noisy_si_sdr + 3.0
    assert strategies["spsa"]["clips"]["white_snr+5_f3"]["updates"] > 0
    # without an oracle in the run, the best adaptive strategy is the one with the highest mean SI-SDR
    assert result["best_adaptive"] == max(("spsa", "ucb"), key=lambda n: strategies[n]["mean"]["si_sdr"])
    # the non-intrusive run (no clean reference): the loop learned from the blind reward
    assert strategies["spsa"]["clips"]["hum60_snr-5_f3"]["final"]["wada_snr"] > result["input"]["clips"]["hum60_snr-5_f3"]["wada_snr"]


def test_against_the_oracle_an_adaptive_strategy_closes_most_of_the_gap(builtin, tmp_path):
    """A 2 s stationary clip, 40 iterations (5 passes): SPSA gets at least half of the oracle's improvement
    over the defaults on the loop's objective, and its reward rises from the first pass to the last."""
    clip = builtin["white_snr+5_f3"]
    n = int(SECONDS * RATE)
    sf.write(tmp_path / "noisy.wav", clip.noisy[:n], RATE, subtype="FLOAT")
    sf.write(tmp_path / "clean.wav", clip.clean[:n], RATE, subtype="FLOAT")
    manifest = {"name": "one", "clips": [{"id": "one", "noisy": "noisy.wav", "clean": "clean.wav", "tags": {}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result, _ = run_evaluation(str(tmp_path), ["defaults", "spsa", "oracle"], 40, progress=False)
    s = result["strategies"]
    assert s["oracle"]["median_fraction_of_oracle"] == pytest.approx(1.0)
    assert s["defaults"]["median_fraction_of_oracle"] == pytest.approx(0.0, abs=1e-9)
    spsa = s["spsa"]["clips"]["one"]
    assert spsa["fraction_of_oracle"] >= 0.5, spsa["fraction_of_oracle"]
    curve, width = np.asarray(spsa["curve"]), spsa["chunks_per_pass"]
    assert curve[-width:].mean() > curve[:width].mean()
    assert s["oracle"]["clips"]["one"]["evaluations"] >= 1000


def test_cli_writes_json_csv_plots_and_spreads_clips_over_processes(folder, tmp_path, capsys):
    out = tmp_path / "out" / "result.json"
    code = evaluate.main([str(folder), "--strategy", "bypass", "--strategy", "defaults", "--strategy", "spsa", "--budget",
                          "4", "--json", str(out), "--plots", str(tmp_path / "plots"), "--jobs", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "defaults" in printed and "bypass" in printed
    result = json.loads(out.read_text())
    assert result["strategies"]["defaults"]["clips"]["white_snr+5_f3"]["curve"]
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 6 and {r["strategy"] for r in rows} == {"bypass", "defaults", "spsa"}
    assert (tmp_path / "plots" / "quality_over_iterations.png").stat().st_size > 1000
    # the same numbers as one process (the processes run one clip and strategy each, the dearest first)
    single, _ = run_evaluation(str(folder), ["bypass", "defaults", "spsa"], 4, progress=False)
    for name in ("bypass", "defaults", "spsa"):
        assert result["strategies"][name]["mean"] == pytest.approx(single["strategies"][name]["mean"])
        for clip_id, entry in single["strategies"][name]["clips"].items():
            assert result["strategies"][name]["clips"][clip_id]["curve"] == pytest.approx(entry["curve"])


def test_cli_names_what_is_wrong(tmp_path, capsys):
    assert evaluate.main([str(tmp_path / "nowhere"), "--strategy", "defaults", "--json", str(tmp_path / "r.json")]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["builtin", "--budget", "0", "--json", str(tmp_path / "r.json")])


def _strict_json(text: str):
    """``json.loads`` that refuses the non-JSON constants ``NaN``, ``Infinity`` and ``-Infinity``."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _clip_entry(reached):
    return {"final": {"si_sdr": 5.0}, "curve": [0.1, 0.2], "objective": 0.2, "rollbacks": 0, "ms_per_iteration": 1.0,
            "fraction_of_oracle": 0.5, "iterations_to_95": reached}  # fmt: skip


def test_a_median_never_reached_is_null_and_the_json_is_strict(tmp_path):
    """Two of three clips never reaching 95 % of the oracle made the median inf, written as ``Infinity``."""
    from scenarios.harness import summarize
    from scenarios.report import write_json

    entries = {"spsa": {"a": _clip_entry(None), "b": _clip_entry(None), "c": _clip_entry(40)},
               "cma": {"a": _clip_entry(None), "b": _clip_entry(30), "c": _clip_entry(40)}}  # fmt: skip
    strategies = summarize(entries, {"a": {}, "b": {}, "c": {}})
    assert strategies["spsa"]["median_iterations_to_95"] is None
    assert strategies["cma"]["median_iterations_to_95"] == 40  # a clip never reaching counts beyond the budget
    path = tmp_path / "result.json"
    write_json({"strategies": strategies}, path)
    assert _strict_json(path.read_text())["strategies"]["spsa"]["median_iterations_to_95"] is None
    with pytest.warns(UserWarning, match=r"strategies\.spsa\.mean\.si_sdr = nan"):  # any other: null, named
        write_json({"strategies": {"spsa": {"mean": {"si_sdr": float("nan"), "pesq": 1.5}}}}, tmp_path / "bad.json")
    assert _strict_json((tmp_path / "bad.json").read_text())["strategies"]["spsa"]["mean"] == {"si_sdr": None, "pesq": 1.5}


def test_a_failed_iteration_is_null_in_the_curve(builtin, monkeypatch, tmp_path):
    """A failed loop step's reward (NaN in the strategy's curve) is written as null, not ``NaN``."""
    from scenarios import harness
    from scenarios.report import write_json
    from scenarios.strategies import ClipRun, Strategy

    clip = builtin["white_snr+5_f3"]

    class Failing(Strategy):
        def run(self, clip, budget, seed, context):
            return ClipRun([0.1, float("nan"), 0.3], final_output=clip.noisy, objective=0.2)

    monkeypatch.setattr(harness, "make_strategy", lambda name: Failing())
    entry, _ = harness.evaluate_strategy(clip, "failing", 3, 0, harness.clip_context(clip, 0.5), ())
    assert entry["curve"] == [0.1, None, 0.3]
    path = tmp_path / "result.json"
    write_json({"strategies": {"failing": {"clips": {clip.id: entry}}}}, path)
    assert _strict_json(path.read_text())["strategies"]["failing"]["clips"][clip.id]["curve"] == [0.1, None, 0.3]
    assert iterations_to_reach(entry["curve"], 0.1, window=1) == 1 and iterations_to_reach(entry["curve"], 0.2, 2) is None


def test_a_budget_shorter_than_one_pass_scores_iterations_like_the_fraction():
    """With fewer iterations than chunks per pass the fraction of the oracle is scored on the partial
    pass; the iterations to 95 % use the same window, so the oracle reaches it at the budget."""
    from types import SimpleNamespace

    from scenarios.harness import add_oracle_fractions

    assert iterations_to_reach([1.0] * 5, 1.0, window=8) == 5
    assert iterations_to_reach([], 0.0, window=8) is None
    entries = {name: {"objective": value, "curve": [value] * 5} for name, value in (("oracle", 1.0), ("defaults", 0.0), ("spsa", 0.96))}
    add_oracle_fractions(entries, SimpleNamespace(n_chunks=8), budget=5)
    assert [entries[n]["fraction_of_oracle"] for n in ("oracle", "defaults", "spsa")] == pytest.approx([1.0, 0.0, 0.96])
    assert [entries[n]["iterations_to_95"] for n in ("oracle", "defaults", "spsa")] == [5, None, 5]


def test_means_by_tag_put_equal_numbers_in_one_group():
    """Tags 10 and 10.0 are one group ("10"), not two; booleans and strings keep their own groups."""
    from scenarios.harness import summarize

    def entry(value):
        return {"final": {"si_sdr": value}, "curve": [], "iterations_to_95": None}

    entries = {"defaults": {"a": entry(10.0), "b": entry(20.0), "c": entry(1.0), "d": entry(3.0), "e": entry(5.0)}}
    tags = {"a": {"snr_db": 10}, "b": {"snr_db": 10.0}, "c": {"snr_db": 2.5}, "d": {"snr_db": -0.0, "stationary": True},
            "e": {"snr_db": 0, "stationary": 1}}  # fmt: skip
    by_tag = summarize(entries, tags)["defaults"]["mean_by_tag"]
    assert by_tag["snr_db"] == {"10": {"si_sdr": 15.0}, "2.5": {"si_sdr": 1.0}, "0": {"si_sdr": 4.0}}
    assert by_tag["stationary"] == {"True": {"si_sdr": 3.0}, "1": {"si_sdr": 5.0}}


def test_means_by_tag_cover_every_scalar_tag_with_a_count_per_group():
    """Guards review S#6c: only the four built-in tag names were grouped (a user's ``room`` or ``mic`` was
    ignored) and a group's mean did not say over how many clips. Every scalar tag is grouped (a list or an
    object is not), and ``n_by_tag`` counts each group's clips."""
    from scenarios.harness import summarize

    def entry(value):
        return {"final": {"si_sdr": value}, "curve": [], "iterations_to_95": None}

    entries = {"defaults": {"a": entry(10.0), "b": entry(20.0), "c": entry(4.0)}}
    tags = {"a": {"room": "hall", "noise": "fan", "mics": [1, 2]}, "b": {"room": "hall"}, "c": {"room": "booth", "snr_db": 5}}
    s = summarize(entries, tags)["defaults"]
    assert s["mean_by_tag"]["room"] == {"hall": {"si_sdr": 15.0}, "booth": {"si_sdr": 4.0}}
    assert s["mean_by_tag"]["noise"] == {"fan": {"si_sdr": 10.0}} and "mics" not in s["mean_by_tag"]
    assert s["n_by_tag"] == {"room": {"hall": 2, "booth": 1}, "noise": {"fan": 1}, "snr_db": {"5": 1}}


def test_the_csv_leaves_undefined_values_empty_and_has_objective_and_fraction_columns(tmp_path):
    """Guards review S#6e: the CSV wrote STOI 0 and PESQ 1 of clips too short for them as measurements (a
    spreadsheet average disagreed with the table), and had no objective or fraction of the oracle."""
    from scenarios.report import write_csv

    clips = {"short": {"final": {"stoi": 0.0, "pesq": 1.0, "si_sdr": 5.5}, "curve": [], "iterations_to_95": None,
                       "objective": 0.25, "fraction_of_oracle": 0.5},
             "long": {"final": {"stoi": 0.8, "pesq": 2.1, "si_sdr": 9.0}, "curve": [], "iterations_to_95": 7}}  # fmt: skip
    write_csv({"strategies": {"spsa": {"clips": clips}}}, tmp_path / "r.csv")
    rows = {r["clip"]: r for r in csv.DictReader((tmp_path / "r.csv").open())}
    assert (rows["short"]["stoi"], rows["short"]["pesq"], rows["short"]["si_sdr"]) == ("", "", "5.5")
    assert (rows["long"]["stoi"], rows["long"]["pesq"]) == ("0.8", "2.1")
    assert (rows["short"]["objective"], rows["short"]["fraction_of_oracle"]) == ("0.25", "0.5")
    assert (rows["long"]["objective"], rows["long"]["fraction_of_oracle"], rows["long"]["iterations_to_95"]) == ("", "", "7")


def test_failed_runs_are_shown_under_the_table_and_all_failed_exits_non_zero(builtin, tmp_path, monkeypatch, capsys):
    """A strategy that failed on some clips is averaged over fewer: the table says n/N and the first error;
    when every run failed the exit code says so."""
    root = write_excerpts(tmp_path / "two", builtin, ["white_snr+5_f3", "pink_snr+20_m3"])
    args = [str(root), "--strategy", "defaults", "--strategy", "bypass", "--budget", "2", "--no-progress", "--json"]
    failing_on(monkeypatch, "bypass", {"pink_snr+20_m3"})
    assert evaluate.main(args + [str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "1/2" in printed and "bypass failed on 1 of 2 clips" in printed
    assert "pink_snr+20_m3: RuntimeError: simulated failure on pink_snr+20_m3" in printed
    assert "defaults failed" not in printed

    failing_on(monkeypatch, "defaults", {"white_snr+5_f3", "pink_snr+20_m3"})
    failing_on(monkeypatch, "bypass", {"white_snr+5_f3", "pink_snr+20_m3"})
    assert evaluate.main(args + [str(tmp_path / "all_failed.json")]) == 1
    captured = capsys.readouterr()
    assert "every run failed" in captured.err and "defaults failed on 2 of 2 clips" in captured.out
    assert (tmp_path / "all_failed.json").is_file()  # the errors are still written


def test_a_set_too_short_for_stoi_and_pesq_prints_its_table(builtin, tmp_path, capsys):
    """Guards review S#2: on clips too short for STOI and PESQ their means are null; the table crashed on
    them (a TypeError, exit 1: "every run failed") after writing the JSON. It shows "-" and exits 0."""
    root = write_excerpts(tmp_path / "short", builtin, ["white_snr+5_f3"], seconds=0.3)
    out = tmp_path / "r.json"
    assert evaluate.main([str(root), "--strategy", "bypass", "--budget", "1", "--no-progress", "--json", str(out),
                          "--plots", str(tmp_path / "plots")]) == 0  # fmt: skip
    assert (tmp_path / "plots" / "quality_over_iterations.png").is_file()
    mean = json.loads(out.read_text())["strategies"]["bypass"]["mean"]
    assert mean["stoi"] is None and mean["si_sdr"] is not None
    row = next(line for line in capsys.readouterr().out.splitlines() if "bypass" in line)
    assert "-" in row and f"{mean['si_sdr']:.2f}" in row


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_clip_too_short_to_score_is_an_error_entry_and_the_rest_runs(builtin, tmp_path, jobs):
    """Guards review S#4: one clip too short to score (64 samples) stopped the whole evaluation (exit 2, no
    JSON, the clip unnamed). Each strategy now gets an error entry naming the clip and the minimum length."""
    clip = builtin["white_snr+5_f3"]
    extra = [{"id": "cut", "noisy": "audio/cut_noisy.wav", "clean": "audio/cut_clean.wav", "tags": {}}]
    root = write_excerpts(tmp_path / "cut", builtin, ["white_snr+5_f3"], extra=extra)
    sf.write(root / "audio" / "cut_noisy.wav", clip.noisy[16000:16064], RATE, subtype="FLOAT")
    sf.write(root / "audio" / "cut_clean.wav", clip.clean[16000:16064], RATE, subtype="FLOAT")
    result, _ = run_evaluation(str(root), ["defaults", "spsa"], 2, jobs=jobs, progress=False)
    for name in ("defaults", "spsa"):
        s = result["strategies"][name]
        assert "error" not in s["clips"]["white_snr+5_f3"] and s["mean"]["si_sdr"] is not None
        assert "'cut'" in s["errors"]["cut"] and "min_scored_s = 0.1 s" in s["errors"]["cut"], s["errors"]


def test_a_missing_metric_extra_fails_before_any_work(builtin, tmp_path, monkeypatch, capsys):
    import sys

    from scenarios import harness

    monkeypatch.setitem(sys.modules, "speechmos", None)  # as if the 'dnsmos' extra were not installed
    root = write_excerpts(tmp_path / "one", builtin, ["white_snr+5_f3"])
    loaded = []
    monkeypatch.setattr(harness, "clip_context", lambda *a: loaded.append(a) or pytest.fail("work started"))
    code = evaluate.main([str(root), "--strategy", "defaults", "--budget", "2", "--dnsmos", "--no-progress",
                          "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2 and not loaded and not (tmp_path / "r.json").exists()
    assert "dnsmos needs the optional extra" in capsys.readouterr().err


def test_a_set_with_no_readable_clip_says_why_for_each(tmp_path, capsys):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "x.wav").write_bytes(b"not audio at all")
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "all-bad", "clips": [
        {"id": "a", "noisy": "audio/x.wav"}, {"id": "b", "noisy": "audio/missing.flac"}]}))  # fmt: skip
    for extra in ([], ["--split", "test"]):
        code = evaluate.main([str(tmp_path), "--strategy", "defaults", "--budget", "2", "--no-progress",
                              "--json", str(tmp_path / "r.json"), *extra])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "no clip" in err, err
        assert "clip 'a'" in err and "x.wav" in err and "unreadable" in err, err
        assert "clip 'b'" in err and "missing.flac" in err and "no such file" in err, err


def test_output_paths_are_checked_before_the_run(tmp_path, monkeypatch, capsys):
    """A --json that is a folder or a --plots that is a file: an error before any work (not a traceback
    after it, losing every result)."""
    from scenarios import harness

    monkeypatch.setattr(harness, "run_evaluation", lambda *a, **k: pytest.fail("the run started"))
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    base = ["builtin", "--strategy", "defaults", "--budget", "2", "--no-progress"]
    assert evaluate.main(base + ["--json", str(tmp_path / "a_folder")]) == 2
    assert "a_folder" in capsys.readouterr().err
    assert evaluate.main(base + ["--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "a_file")]) == 2
    assert "a_file" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    assert evaluate.main(base + ["--json", str(tmp_path / "a_file" / "r.json")]) == 2
    assert "a_file" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "inf", "0.001"])
def test_a_chunk_length_that_gives_no_chunk_is_refused(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        evaluate.parse_args(["builtin", "--chunk-s", value, "--json", str(tmp_path / "r.json")])
    assert info.value.code == 2 and "--chunk-s" in capsys.readouterr().err
    assert evaluate.parse_args(["builtin", "--chunk-s", "0.25", "--json", str(tmp_path / "r.json")]).chunk_s == 0.25


@pytest.mark.parametrize("value", ["0.05", "0.099"])
def test_a_chunk_length_under_the_scored_minimum_is_refused_at_parsing(value, tmp_path, capsys):
    """Chunks under min_scored_s (0.1 s) are never scored, so every run failed later, blaming the clip's length."""
    with pytest.raises(SystemExit) as info:
        evaluate.parse_args(["builtin", "--chunk-s", value, "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--chunk-s" in err and "0.1" in err and "min_scored_s" in err
    assert evaluate.parse_args(["builtin", "--chunk-s", "0.1", "--json", str(tmp_path / "r.json")]).chunk_s == 0.1


def test_a_clip_selection_evaluates_each_clip_once_and_reports_only_its_own(folder, capsys):
    result, _ = run_evaluation(str(folder), ["bypass"], 1, progress=False, clip_ids=["white_snr+5_f3"] * 2)
    assert result["clips"] == 1 and list(result["strategies"]["bypass"]["clips"]) == ["white_snr+5_f3"]
    assert result["unreadable_clips"] == {}  # 'gone' is not in the selection
    code = evaluate.main([str(folder), "--clip", "gone", "--strategy", "bypass", "--budget", "1", "--json",
                          str(folder / "never.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "'gone'" in err and "gone.wav" in err and "no such file" in err, err


def test_plot_file_names_are_safe_for_any_clip_id(tmp_path):
    """Ids like 'spk1/utt1' (a dataset's own layout) are legal in a manifest; their spectrograms are
    written into the plots folder itself, under a file name the OS accepts."""
    from scenarios.report import write_plots

    rng = np.random.default_rng(0)
    ids = {"spk1/utt1": 1.0, "dir\\b:c?*": 5.0}
    clips = {cid: {"final": {"si_sdr": v}, "curve": [0.1, 0.2], "chunks_per_pass": 2} for cid, v in ids.items()}
    result = {"strategies": {"spsa": {"clips": clips, "mean_by_tag": {}}}, "best_adaptive": "spsa", "input": {"clips": {}}}
    outputs = {("spsa", cid): (rng.standard_normal(RATE // 2) * 0.1, rng.standard_normal(RATE // 2) * 0.1, RATE)
               for cid in ids}  # fmt: skip
    written = write_plots(result, outputs, tmp_path / "plots")
    spectrograms = sorted(p.name for p in written if p.name.startswith("spectrogram_"))
    assert len(spectrograms) == 2 and all(p.parent == tmp_path / "plots" and p.is_file() for p in written)
    assert spectrograms == ["spectrogram_best_dir_b_c__.png", "spectrogram_worst_spk1_utt1.png"]


def test_plots_of_a_set_without_clean_references_use_wada_snr(tmp_path):
    """No clean reference, no SI-SDR: the bars by noise type and the worst/best picks use WADA-SNR (the
    metric the best adaptive strategy is chosen by then), not an empty chart and no spectrograms."""
    from scenarios.report import write_plots

    rng = np.random.default_rng(0)
    ids = {"a": ("white", 3.0), "b": ("pink", 9.0)}
    clips = {cid: {"final": {"wada_snr": v}, "curve": [0.1, 0.2], "chunks_per_pass": 2} for cid, (_, v) in ids.items()}
    by_noise = {noise: {"wada_snr": v} for noise, v in ids.values()}
    result = {"strategies": {"spsa": {"clips": clips, "mean": {"wada_snr": 6.0}, "mean_by_tag": {"noise": by_noise}}},
              "best_adaptive": "spsa", "input": {"clips": {"a": {"wada_snr": 1.0}, "b": {"wada_snr": 2.0}}}}  # fmt: skip
    outputs = {("spsa", cid): (rng.standard_normal(RATE // 2) * 0.1, rng.standard_normal(RATE // 2) * 0.1, RATE)
               for cid in ids}  # fmt: skip
    names = sorted(p.name for p in write_plots(result, outputs, tmp_path / "plots"))
    assert names == ["quality_over_iterations.png", "spectrogram_best_b.png", "spectrogram_worst_a.png",
                     "wada_snr_by_noise.png"]  # fmt: skip


def test_each_run_reads_the_set_afresh(builtin, tmp_path):
    """In one process (a notebook), a file added or fixed between two runs is seen by the second."""
    root = write_excerpts(tmp_path / "set", builtin, ["white_snr+5_f3"], seconds=0.5,
                          extra=[{"id": "late", "noisy": "audio/late.wav"}])  # fmt: skip
    first, _ = run_evaluation(str(root), ["bypass"], 1, progress=False)
    assert first["clips"] == 1 and "late" in first["unreadable_clips"]
    sf.write(root / "audio" / "late.wav", builtin["pink_snr+20_m3"].noisy[: RATE // 2], RATE)
    second, _ = run_evaluation(str(root), ["bypass"], 1, progress=False)
    assert second["clips"] == 2 and second["unreadable_clips"] == {}
    assert "late" in second["strategies"]["bypass"]["clips"]


def test_no_fraction_of_the_oracle_where_the_oracle_barely_beats_the_defaults(capsys):
    """An oracle 2e-6 above the defaults made a run's fraction -5000 and the median -2500; such clips (and
    those where the oracle is no better) get no fraction, and the summary names them."""
    from types import SimpleNamespace

    from scenarios.harness import MIN_ORACLE_ROOM, add_oracle_fractions, summarize

    entries, context = {}, SimpleNamespace(n_chunks=2)
    for cid, room in (("a", 0.5), ("b", 2e-6), ("c", 0.0), ("d", -0.1)):
        entries[cid] = {name: {"objective": value, "curve": [value] * 4, "final": {"si_sdr": 1.0}}
                        for name, value in (("oracle", room), ("defaults", 0.0), ("spsa", 0.4 * room - 0.01))}  # fmt: skip
        add_oracle_fractions(entries[cid], context, budget=4)
    assert entries["a"]["spsa"]["fraction_of_oracle"] == pytest.approx(0.38)
    assert all("fraction_of_oracle" not in entries[c]["spsa"] for c in "bcd") and MIN_ORACLE_ROOM > 2e-6
    by_strategy = {name: {cid: entries[cid][name] for cid in entries} for name in ("oracle", "defaults", "spsa")}
    spsa = summarize(by_strategy, {cid: {} for cid in entries})["spsa"]
    assert spsa["median_fraction_of_oracle"] == pytest.approx(0.38)
    assert spsa["no_fraction_of_oracle"] == ["b", "c", "d"]
    from scenarios.report import print_table

    print_table({"scenarios": "four", "clips": 4, "budget": 4, "seconds": 1.0, "strategies": {"spsa": spsa}})
    assert "leaves out 3 clips where the oracle beats the defaults by less than 0.01 reward units: b, c, d" in capsys.readouterr().out


def test_the_best_adaptive_strategy_is_ranked_on_one_criterion():
    """A strategy with no fraction of the oracle used to be ranked by its SI-SDR in dB against the others'
    fractions (12 dB > 0.9): now it ranks last on the fraction."""
    from scenarios.harness import _best_adaptive

    strategies = {"spsa": {"median_fraction_of_oracle": 0.9, "mean": {"si_sdr": 10.0}},
                  "cma": {"median_fraction_of_oracle": None, "mean": {"si_sdr": 12.0}},
                  "ucb": {"median_fraction_of_oracle": None, "mean": {"si_sdr": 11.0, "wada_snr": 30.0}}}  # fmt: skip
    assert _best_adaptive(strategies, ["cma", "spsa", "ucb"]) == "spsa"
    for s in strategies.values():
        s["median_fraction_of_oracle"] = None
    assert _best_adaptive(strategies, ["spsa", "cma", "ucb"]) == "cma"
    assert _best_adaptive(strategies, []) is None


def test_means_leave_out_undefined_values_and_count_their_clips(capsys):
    """STOI 0 (too little speech) was averaged as a measurement: 0.83 and 0 gave 0.41. Means are now over
    the measured values, and ``mean_n`` says over how many clips; the table says so when it is fewer."""
    from scenarios.harness import summarize
    from scenarios.report import print_table

    def entry(final):
        return {"final": final, "curve": [], "iterations_to_95": None}

    entries = {"defaults": {"long": entry({"stoi": 0.83, "si_sdr": 10.0, "wada_snr": 20.0}),
                            "short": entry({"stoi": 0.0, "si_sdr": 12.0, "wada_snr": 22.0}),
                            "blind": entry({"wada_snr": 24.0})}}  # fmt: skip
    s = summarize(entries, {c: {} for c in ("long", "short", "blind")})["defaults"]
    assert s["mean"] == pytest.approx({"stoi": 0.83, "si_sdr": 11.0, "wada_snr": 22.0})
    assert s["mean_n"] == {"stoi": 1, "si_sdr": 2, "wada_snr": 3}
    print_table({"scenarios": "three", "clips": 3, "budget": 2, "seconds": 1.0, "strategies": {"defaults": s}})
    out = capsys.readouterr().out
    assert "means over fewer clips (a clean reference, a defined value): si_sdr 2, stoi 1 of 3" in out


@pytest.mark.parametrize("extra, named", [
    (["--json", "results/eval.csv"], "overwrite the JSON"),  # the CSV beside it would have the same path
    (["--json", "r.json", "--jobs", "0"], "--jobs"),
])  # fmt: skip
def test_flags_that_would_lose_results_or_run_nothing_are_refused(extra, named, capsys):
    with pytest.raises(SystemExit) as info:
        evaluate.parse_args(["builtin", *extra])
    assert info.value.code == 2 and named in capsys.readouterr().err
