"""The HTML report: self-contained, holds its sections and rows, escapes capture contents."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netae.cli import app
from netae.config import Settings, TrainSettings
from netae.evaluate import match_labels, read_labels
from netae.pipeline import expand_inputs
from netae.report import render_report, render_training_report
from netae.workflow import ScoreRun, TrainRun, score_captures, train_captures

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
SECTIONS = ("incidents", "hosts", "timeline", "summary", "top-flows", "distribution", "model")
HOSTILE = "<script>alert('x')</script>"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainRun:
    settings = Settings(train=TrainSettings(epochs=2, seed=0))
    path = tmp_path_factory.mktemp("model") / "sample.netae"
    return train_captures(expand_inputs([SAMPLES / "normal"]), output=path, settings=settings)


@pytest.fixture(scope="module")
def scored(trained) -> ScoreRun:
    return score_captures([str(SAMPLES / "mixed.pcap")], model_path=trained.path, device="cpu")


@pytest.fixture(scope="module")
def labels(scored) -> list[frozenset[str] | None]:
    return match_labels(scored.table, read_labels(SAMPLES / "mixed_labels.csv"))


class Page(HTMLParser):
    """Collects what the checks need: link targets, tags, section ids and their headings, flow rows."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, list[str]] = {}
        self.flow_rows = 0
        self._section: str | None = None
        self._in_h2 = False
        self._in_flows = False
        self._style: list[str] = []
        self._in_style = False
        self.feed(text)
        self.close()

    @property
    def style(self) -> str:
        return "".join(self._style)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data") and value is not None:
                self.urls.append((tag, name, value))
        if tag == "section":
            self._section = a.get("id") or ""
            self.sections[self._section] = []
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "table" and "flows" in (a.get("class") or "").split():
            self._in_flows = True
        elif tag == "tr" and self._in_flows:
            self.flow_rows += 1
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag == "table":
            self._in_flows = False
        elif tag == "section":
            self._section = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_h2 and self._section is not None:
            self.sections[self._section].append(data)
        if self._in_style:
            self._style.append(data)


def assert_self_contained(page: Page) -> None:
    for tag, attr, value in page.urls:
        v = value.strip().lower()
        assert not v.startswith(("http:", "https:", "//", "ftp:", "data:", "file:")), (tag, attr, value)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags
    assert "iframe" not in tags
    assert "img" not in tags
    assert not [a for t, a in page.tags if t == "link" and "stylesheet" in (a.get("rel") or "")]
    assert "@import" not in page.style
    assert "url(" not in page.style


def test_report_is_self_contained_with_every_section(scored, labels):
    text = render_report(scored, labels=labels)
    assert text.startswith("<!DOCTYPE html>")
    page = Page(text)
    assert_self_contained(page)
    assert set(SECTIONS) <= set(page.sections)
    for sid in SECTIONS:
        assert "".join(page.sections[sid]).strip(), f"section {sid} has no <h2>"
    assert text.count("<svg") >= 3


@pytest.mark.parametrize("top_n", [0, 1, 7, 25, 100_000])
def test_one_table_row_per_top_flow(scored, top_n):
    page = Page(render_report(scored, top_n=top_n))
    n_anom = int(scored.table.is_anomaly.sum())
    assert n_anom > 0
    expected = min(top_n, n_anom)
    # a header row plus one row per flow; no table at all when there is nothing to list
    assert page.flow_rows == (expected + 1 if expected else 0)


def test_highest_scores_come_first(scored):
    text = render_report(scored, top_n=5)
    t = scored.table
    top = np.sort(t.score[t.is_anomaly])[::-1][:5]
    positions = [text.index(f'class="num score">{float(s):.4g}<') for s in top]
    assert positions == sorted(positions)


def test_labels_colour_benign_and_attack(scored, labels):
    with_labels = render_report(scored, labels=labels)
    without = render_report(scored)
    assert "benign" in with_labels
    assert "attack" in with_labels
    assert "Against the labels" in with_labels
    assert "above threshold" in without
    assert "Against the labels" not in without
    with pytest.raises(ValueError, match="one entry per flow"):
        render_report(scored, labels=labels[:-1])


def test_capture_contents_are_escaped(scored):
    t = scored.table
    table = dataclasses.replace(
        t, files=(HOSTILE + ".pcap",), explanations=tuple(HOSTILE for _ in range(t.n_flows)), feature_names=tuple(
            HOSTILE for _ in t.feature_names
        ),
    )  # fmt: skip
    data = dataclasses.replace(scored.data, files=table.files, failures=((HOSTILE, HOSTILE),))
    run = dataclasses.replace(scored, table=table, data=data)
    text = render_report(run, title=HOSTILE)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert_self_contained(Page(text))


def test_rendering_is_deterministic(scored, labels):
    assert render_report(scored, labels=labels) == render_report(scored, labels=labels)


def test_training_report_has_model_card_loss_curves_and_validation_scores(trained):
    text = render_training_report(trained, model_id="abc123")
    page = Page(text)
    assert_self_contained(page)
    assert {"model", "distribution"} <= set(page.sections)
    assert "training loss" in text
    assert "validation loss" in text
    n_epochs = len(trained.model.training.history)
    assert text.count("<circle") == 2 * n_epochs  # one marker per epoch per curve
    assert f"{len(trained.val_scores)} held-out" in text.replace("\u202f", "")


def test_cli_report_writes_the_file_atomically(trained, tmp_path):
    out = tmp_path / "report.html"
    args = ["report", str(SAMPLES / "mixed.pcap"), "-m", str(trained.path), "-o", str(out)]
    r = runner.invoke(app, [*args, "--labels", str(SAMPLES / "mixed_labels.csv"), "--top", "5", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr  # the page was written; report does not signal anomalies (issue 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    page = Page(out.read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert page.flow_rows == 6

    out.write_text("old")
    r = runner.invoke(app, [*args, "--labels", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2
    assert "Traceback" not in r.stderr
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_cli_score_and_train_write_reports_beside_their_output(trained, tmp_path):
    csv_out, html_out = tmp_path / "alerts.csv", tmp_path / "alerts.html"
    r = runner.invoke(
        app,
        ["score", str(SAMPLES / "mixed.pcap"), "-m", str(trained.path), "-f", "csv", "-o", str(csv_out),
         "--report", str(html_out), "--device", "cpu"],
    )  # fmt: skip
    assert r.exit_code == 1, r.stderr
    assert csv_out.stat().st_size
    assert set(SECTIONS) <= set(Page(html_out.read_text(encoding="utf-8")).sections)

    model, card = tmp_path / "m.netae", tmp_path / "card.html"
    r = runner.invoke(
        app,
        ["train", str(SAMPLES / "normal" / "office_a.pcap"), "-o", str(model), "--epochs", "1", "--seed", "0",
         "--hidden-size", "8", "--report", str(card), "--quiet"],
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    page = Page(card.read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert {"model", "distribution"} <= set(page.sections)


def test_incidents_come_first_then_hosts_and_the_contents_link_every_section(scored):
    text = render_report(scored)
    page = Page(text)
    assert list(page.sections)[:3] == ["incidents", "hosts", "timeline"]
    nav = [a["href"] for t, a in page.tags if t == "a" and (a.get("href") or "").startswith("#")]
    assert {f"#{sid}" for sid in SECTIONS} <= set(nav)
    assert text.index('href="#model"') < text.index('<section id="incidents"')  # reachable from the top
    inc = scored.table.incidents
    assert inc is not None and inc.n_incidents > 0
    for k in range(min(inc.n_incidents, 30)):
        assert f'id="inc-{k + 1}"' in text and inc.ids[k] in text
    assert text.count("<details>") == min(inc.n_incidents, 30)  # flows on demand, no script


def test_every_flow_row_shows_its_community_id(scored):
    from netae.output import community_ids

    text = render_report(scored, top_n=5)
    t = scored.table
    top = np.flatnonzero(t.is_anomaly)
    top = top[np.argsort(-t.score[top], kind="stable")][:5]
    for cid in community_ids(t, top):
        assert cid in text


def test_host_section_ranks_hosts_by_their_best_incident_with_a_sparkline(scored):
    text = render_report(scored)
    section = text[text.index('<section id="hosts"') : text.index("</section>", text.index('<section id="hosts"'))]
    inc = scored.table.incidents
    f = scored.table.flows
    from netae.tables import format_ip

    first_host = format_ip(int(f.src_hi[inc.rep[0]]), int(f.src_lo[inc.rep[0]]))
    assert section.index(first_host) < section.index('href="#inc-1"') + 200
    assert section.count('<svg class="spark"') >= 1


def test_people_see_words_and_formatted_numbers_not_python(scored, labels):
    text = render_report(scored, labels=labels)
    for raw in ("True", "False", "None", "ctx_src_new_dports_log", "log_ip_len_bytes", " 1 flows", ">1 flows"):
        assert raw not in text, raw
    assert not re.search(r"\d\.\d{9,}", text)  # no 16-digit floats
    assert "best incident" in text  # the labels table says where each attack's best incident ranks


def test_cli_table_lists_incidents_by_default_and_flows_on_demand(trained):
    args = ["score", str(SAMPLES / "mixed.pcap"), "-m", str(trained.path), "--device", "cpu"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.stderr
    assert " incident" in r.stdout and "inc-" in r.stdout
    flows = runner.invoke(app, [*args, "--group-by", "flow"])
    assert "inc-" not in flows.stdout and "ANOMALY" in flows.stdout
    jsonl = runner.invoke(app, [*args, "--group-by", "incident", "--format", "jsonl"])
    docs = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert docs and {d["event"]["dataset"] for d in docs} == {"netae.incident"}
    assert [d["netae"]["incident"]["rank"] for d in docs] == list(range(1, len(docs) + 1))
    rows = runner.invoke(app, [*args, "--format", "jsonl"]).stdout.splitlines()
    assert {json.loads(x)["netae"]["incident"]["id"] for x in rows} == {d["netae"]["incident"]["id"] for d in docs}
