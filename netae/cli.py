"""The netae command line: parse options, call the library, map errors to exit statuses.

Exit statuses (the same for every command):
  0  ran and found nothing anomalous
  1  anomalies found
  2  usage, input, config or model error
  3  some inputs were unreadable; the others were processed (their results are in the output)
  70 internal error (a bug: rerun with --debug and report it)
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer.exceptions import TyperException

from netae import __version__
from netae.errors import (
    EXIT_ANOMALIES,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    InputError,
    NetaeError,
    printable,
)

EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM gives 143 (128 + the signal, as shells report it)
EXIT_HELP = """\b
Exit status: 0 nothing anomalous · 1 anomalies found · 2 usage, input, config or model error ·
3 some inputs unreadable, the others processed · 70 internal error (rerun with --debug)."""
DEVICE_HELP = (
    "Where to run the model. On the CPU netae runs its own compiled kernel, without importing PyTorch "
    "(see --engine); cuda needs netae[train]."
)
ENGINE_HELP = (
    "What runs the model on the CPU: numba (netae's compiled kernel), torch (PyTorch, needs netae[train]) "
    "or auto (numba)."
)

app = typer.Typer(
    name="netae",
    help="Learn normal network traffic from packet captures and flag the flows that do not fit.\n\n" + EXIT_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

err_console = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {"debug": bool(os.environ.get("NETAE_DEBUG")), "quiet": False}

if TYPE_CHECKING:
    from netae.modelfile import TrainedModel

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("netae")


class GroupBy(enum.StrEnum):
    incident = "incident"
    flow = "flow"
    host = "host"
    pair = "pair"


class OutputFormat(enum.StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


class Device(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Engine(enum.StrEnum):
    auto = "auto"
    numba = "numba"
    torch = "torch"


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    handler.addFilter(_printable_record)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)


def _printable_record(record: logging.LogRecord) -> bool:
    """Escape controls in every log line: names from files and packets reach them (issue 21)."""
    record.msg, record.args = printable(record.getMessage()), None
    return True


def handle_errors(func: F) -> F:
    """Turn NetaeError into one red line and its exit status; anything else is a bug (70)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NetaeError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            _quiet_broken_pipe()
            raise typer.Exit(EXIT_OK) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None  # temporary files are gone (atomic_write)
        except (typer.Exit, typer.Abort, TyperException):
            raise  # click prints usage errors itself and exits 2
        except (OSError, UnicodeError) as exc:  # the environment, not a bug: a full disk, a bad name
            _error(_os_message(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as exc:
            _internal_error(exc)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def _error(message: str) -> None:
    if _state["debug"]:
        err_console.print_exception(show_locals=False)
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", markup=True, soft_wrap=True)


def _internal_error(exc: BaseException) -> None:
    if _state["debug"]:
        err_console.print_exception(show_locals=False)
        return
    text = printable(f"{type(exc).__name__}: {exc}")
    err_console.print(
        f"[bold red]internal error:[/] {escape(text)} (a bug in netae; rerun with --debug for the traceback "
        "and report it)",
        markup=True,
        soft_wrap=True,
    )


def _os_message(exc: OSError | UnicodeError) -> str:
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8 where netae needs it ({exc.__class__.__name__}: {exc})"
    where = f" {exc.filename}" if exc.filename is not None else ""
    return f"cannot use{where}: {exc.strerror or exc}"


def warn(text: str) -> None:
    """One unwrapped ``warning:`` line on stderr, controls and markup escaped (cron mails, logs)."""
    err_console.print(f"[yellow]warning:[/] {escape(printable(text))}", markup=True, soft_wrap=True, highlight=False)


def say(text: str) -> None:
    """One line of plain text on stderr, shown as it is (paths may hold brackets or controls)."""
    err_console.print(printable(text), markup=False, soft_wrap=True, highlight=False)


def _on_signal(signum: int, frame: Any) -> None:
    # SIGTERM from cron or systemd: unwind like Ctrl-C so atomic_write removes its temporary file.
    raise SystemExit(128 + signum)


def _finite_threshold(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number, not negative, got {value}")
    return value


def _strict_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, so that strict JSON parsers accept the output."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict_json(v) for v in obj]
    return obj


def _check_output(output: Path | None, *, inputs: Sequence[str] = (), model: Path | None = None) -> None:
    """Refuse ``-o`` that names an input capture or the model: writing it would destroy it."""
    if output is None or str(output) == "-" or not output.exists():
        return
    for other in [*inputs, *([str(model)] if model is not None else [])]:
        if other != "-" and os.path.exists(other) and os.path.samefile(output, other):
            raise InputError(f"-o {output} is also an input; writing it would destroy it, so nothing was written")


def _stdin_open(sources: list[str]) -> None:
    if "-" in sources and (sys.stdin is None or sys.stdin.closed):
        raise InputError("standard input is closed; give capture files or pipe a capture in")


def _quiet_broken_pipe() -> None:
    # `netae score ... | head`: the reader went away; stop quietly, as click does.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def _write_report(path: Path, text: str) -> None:
    from netae.files import atomic_write

    with atomic_write(path) as fh:
        fh.write(text)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netae {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr.")] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = _state["debug"] or debug
    _state["verbose"] = verbose
    _setup_logging(verbose, quiet=False)
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _on_signal)


def _quiet(quiet: bool) -> None:
    _state["quiet"] = quiet
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)


def _file_progress(sources: list[str], quiet: bool) -> tuple[Callable[[str, Any], None], Callable[[], None]]:
    """A per-file callback that warns about skipped/truncated data, plus a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )
    task = progress.add_task("reading captures", total=len(sources))
    progress.start()

    def on_file(source: str, counts: Any) -> None:
        progress.advance(task)
        for message in counts.warnings or []:
            # One unwrapped line per warning (cron mails and log files); silenced by --quiet.
            if not quiet:
                warn(message if message.startswith(source) else f"{source}: {message}")
        if counts.skipped:
            from netae.capture.skips import skip_summary

            detail = skip_summary(counts.skipped)
            log.info("%s: skipped %d of %d records (%s)", source, counts.n_skipped, counts.records, detail)

    return on_file, progress.stop


@app.command(help="Learn normal traffic from captures and write one model file.\n\n" + EXIT_HELP)
@handle_errors
def train(
    paths: Annotated[list[str], typer.Argument(help="Capture files or directories (searched recursively).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write.")] = Path("model.netae"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum training epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (CPU runs are reproducible).")] = None,
    device: Annotated[Device | None, typer.Option(help="Where to train.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Flows (windows) per batch.")] = None,
    hidden_size: Annotated[int | None, typer.Option(help="LSTM hidden size.")] = None,
    layers: Annotated[int | None, typer.Option(help="LSTM layers.")] = None,
    threshold_strategy: Annotated[
        str | None, typer.Option("--threshold-strategy", help="quantile, meanstd or spot.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write an HTML model card with loss curves here.")
    ] = None,
    shard_buffer_mb: Annotated[
        float | None,
        typer.Option(
            "--shard-buffer-mb",
            min=1,
            help="Feature datasets: hold at most this many MB of shards in memory (default: all).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    from netae.config import given, load_settings
    from netae.dataset import is_dataset
    from netae.extras import require
    from netae.pipeline import expand_inputs

    require("torch", "netae train")
    from netae.train import dist_info
    from netae.workflow import train_captures

    is_main = dist_info().is_main  # under torchrun only rank 0 reports; errors show on every rank
    quiet = quiet or not is_main
    _quiet(quiet)
    s = load_settings(config)
    s = dataclasses.replace(
        s,
        train=dataclasses.replace(
            s.train,
            epochs=given(epochs, s.train.epochs),
            seed=given(seed, s.train.seed),
            device=device.value if device else s.train.device,
            batch_size=given(batch_size, s.train.batch_size),
        ),
        model=dataclasses.replace(
            s.model, hidden_size=given(hidden_size, s.model.hidden_size), num_layers=given(layers, s.model.num_layers)
        ),
        threshold=dataclasses.replace(s.threshold, strategy=given(threshold_strategy, s.threshold.strategy)),
    )
    settings = s.check()
    # Feature datasets (directories of shards) are read as they are, captures searched for.
    sources = [s for p in paths for s in ([p] if p != "-" and is_dataset(p) else expand_inputs([p]))]
    _stdin_open(sources)
    _check_output(output, inputs=sources)
    _check_output(report, inputs=sources, model=output)
    on_file, stop = _file_progress(sources, quiet)
    on_epoch, epoch_bar = _epoch_progress(settings.train.epochs, quiet, stop)
    try:
        run = train_captures(
            sources,
            output=output,
            settings=settings,
            on_file=on_file,
            on_epoch=on_epoch,
            shard_buffer_mb=shard_buffer_mb,
        )
    finally:
        stop()
        epoch_bar.stop()
    if report is not None and is_main:
        from netae.report import render_training_report

        _write_report(report, render_training_report(run, model_id=run.model.model_id))
    for name, message in run.data.failures if is_main else ():
        warn(f"skipped {name}: {message}")
    if not quiet:
        written = f"{output}" + (f" and {report}" if report else "")
        say(_training_summary(run.model, written))
    if run.data.failures:
        raise typer.Exit(EXIT_PARTIAL)


def _epoch_progress(n_epochs: int, quiet: bool, stop_files: Callable[[], None]) -> tuple[Callable[[Any], None], Any]:
    """An on_epoch callback with a progress bar (it replaces the file bar), and the bar to stop."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    epoch_bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs {task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )
    task = epoch_bar.add_task("train", total=n_epochs, info="")

    def on_epoch(e: Any) -> None:
        if not epoch_bar.live.is_started:
            stop_files()
            epoch_bar.start()
        epoch_bar.update(task, completed=e.epoch, info=f"loss {e.train_loss:.4f} val {e.val_loss:.4f}")
        log.info("epoch %d/%d loss %.5f val %.5f%s", e.epoch, e.n_epochs, e.train_loss, e.val_loss, " *" * e.is_best)

    return on_epoch, epoch_bar


def _training_summary(model: Any, written: str) -> str:
    """The one line ``netae train`` ends with."""
    tr, th = model.training, model.threshold
    best = tr.best
    return (
        f"trained on {tr.flows} flows ({tr.packets} packets) from {len(tr.inputs)} file(s): "
        f"{tr.epochs} epochs on {tr.device}"
        + (f" x {tr.ranks} ranks" if tr.ranks > 1 else "")
        + f", best epoch {tr.best_epoch} "
        f"(train loss {best.train_loss if best else math.nan:.4f}, "
        f"val loss {best.val_loss if best else math.nan:.4f}); "
        f"threshold {th.value_:.4g} ({th.strategy}, {tr.val_flows} validation flows); wrote {written}"
    )


@app.command(help="Score captures with a model and report the anomalous flows.\n\n" + EXIT_HELP)
@handle_errors
def score(
    paths: Annotated[list[str], typer.Argument(help="Capture files or directories; - reads standard input.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file from `netae train`.")] = Path("model.netae"),
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (atomically), not stdout.")] = None,
    all_flows: Annotated[bool, typer.Option("--all", help="Emit every flow, not only anomalies.")] = False,
    threshold: Annotated[
        float | None, typer.Option(help="Override the model's threshold.", callback=_finite_threshold)
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows shown by --format table (0: all).")] = 50,
    append: Annotated[bool, typer.Option(help="Append to --output (jsonl/csv), whole lines only.")] = False,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    engine: Annotated[Engine, typer.Option(help=ENGINE_HELP)] = Engine.auto,
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream",
            help="Score flows as they expire, in bounded memory, writing each batch at once "
            "(default: on for - and for inputs of 1 GiB or more, unless --report is given).",
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write an HTML report here.")] = None,
    group_by: Annotated[
        GroupBy | None,
        typer.Option(
            "--group-by",
            help="One row per incident (default of --format table), per flow (default of csv and jsonl), "
            "or per source host or host pair.",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            envvar="NETAE_STATE",
            help="Keep the flows still open and the context window in this file between runs, so that "
            "rotated captures scored one per run give the results of one whole capture (implies --stream).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr on success.")] = False,
) -> None:
    from netae.output import append_lines, atomic_write, render, render_groups, render_incidents, select_rows
    from netae.pipeline import expand_inputs
    from netae.stream import wants_stream

    _quiet(quiet)
    if append and output is None:
        raise typer.BadParameter("--append needs --output FILE")
    if append and fmt is OutputFormat.table:
        raise typer.BadParameter("--append works with --format jsonl or csv")
    sources = expand_inputs(paths)
    _stdin_open(sources)
    _check_output(output, inputs=sources, model=model)
    _check_output(report, inputs=sources, model=model)
    if stream and report is not None:
        raise typer.BadParameter("--report needs the whole capture; use it without --stream")
    if stream and group_by not in (None, GroupBy.flow):
        raise typer.BadParameter("--group-by needs the whole capture; use it without --stream")
    if state is not None and (stream is False or report is not None or group_by not in (None, GroupBy.flow)):
        raise typer.BadParameter("--state scores as a stream: use it without --no-stream, --report and --group-by")
    auto = stream is None and report is None and group_by in (None, GroupBy.flow) and wants_stream(sources)
    if state is not None or stream or auto:
        _score_stream(sources, model=model, fmt=fmt, output=output, all_flows=all_flows, threshold=threshold,
                      limit=limit, append=append, device=device, quiet=quiet, state=state, engine=engine)  # fmt: skip
    run = _score_with_progress(sources, model=model, threshold=threshold, device=device, quiet=quiet, engine=engine)
    table = run.table
    kwargs: dict[str, Any] = {"limit": limit or None} if fmt is OutputFormat.table else {}
    if output is None and fmt is OutputFormat.table:
        kwargs["fh"] = sys.stdout  # the terminal itself: its width, colour and NO_COLOR
    if group_by is None:  # people see incidents first; programs get one row per flow
        group_by = GroupBy.incident if fmt is OutputFormat.table and not all_flows else GroupBy.flow
    if group_by is GroupBy.incident:
        text = render_incidents(table, fmt.value, **kwargs)
    elif group_by is not GroupBy.flow:
        text = render_groups(table, group_by.value, fmt.value, include_all=all_flows, **kwargs)
    else:
        rows = select_rows(table, include_all=all_flows, by_score=fmt is OutputFormat.table)
        text = render(table, rows, fmt.value, **kwargs)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif append:
        with append_lines(output, fmt=fmt.value, header=_csv_header(fmt, text)) as sink:
            sink.write(_without_header(text) if fmt is OutputFormat.csv and sink.had_lines else text)
            sink.flush()
    else:
        with atomic_write(output) as fh:
            fh.write(text)
    if report is not None:
        from netae.report import render_report

        _write_report(report, render_report(run, title=_report_title(sources)))
    _finish_scoring(run, quiet, [p for p in (output, report) if p is not None])


def _csv_header(fmt: OutputFormat, text: str) -> str:
    """The header line of CSV output (written once into an empty file by ``append_lines``)."""
    return text.split("\n", 1)[0] + "\n" if fmt is OutputFormat.csv and text else ""


def _without_header(csv_text: str) -> str:
    return csv_text.split("\n", 1)[1] if "\n" in csv_text else ""


def _score_with_progress(
    sources: list[str], *, model: Path, threshold: float | None, device: Device, quiet: bool,
    engine: Engine = Engine.auto,
) -> Any:  # fmt: skip
    """Batch-score ``sources`` with a per-file progress bar on stderr."""
    from netae.workflow import score_captures

    on_file, stop = _file_progress(sources, quiet)
    try:
        return score_captures(
            sources, model_path=model, threshold=threshold, device=device.value, on_file=on_file, engine=engine.value
        )
    finally:
        stop()


def _report_title(sources: list[str]) -> str:
    names = [Path(s).name if s != "-" else "stdin" for s in sources]
    return "netae report: " + ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _finish_scoring(run: Any, quiet: bool, written: list[Path], *, anomalies_status: bool = True) -> None:
    """Warn about skipped inputs, say what was found, and exit with the scoring status.

    ``anomalies_status=False`` (``netae report``): 0 once the output is written, whatever it shows.
    """
    table = run.table
    n_anom = int(table.is_anomaly.sum())
    for name, message in run.data.failures:
        warn(f"skipped {name}: {message}")
    if not quiet:
        say(
            f"{n_anom} of {table.n_flows} flows anomalous (threshold {table.threshold:.4g})"
            + (f"; wrote {' and '.join(str(p) for p in written)}" if written else "")
        )
    if run.data.failures:
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_ANOMALIES if n_anom and anomalies_status else EXIT_OK)


def _score_stream(
    sources: list[str],
    *,
    model: Path,
    fmt: OutputFormat,
    output: Path | None,
    all_flows: bool,
    threshold: float | None,
    limit: int,
    append: bool,
    device: Device,
    quiet: bool,
    state: Path | None = None,
    engine: Engine = Engine.auto,
) -> None:
    """``netae score --stream``: write each batch of expired flows as soon as it is scored.

    stdout is flushed after every batch; ``-o`` is written to a temporary file renamed at the
    end (atomic), or with ``--append`` whole lines are appended to it batch by batch.
    """
    import contextlib

    from netae.modelfile import load_model
    from netae.output import CSV_COLUMNS, append_lines, atomic_write, render, select_rows
    from netae.stream import StreamTotals, stream_scores

    m = load_model(model)
    totals = StreamTotals()
    on_file, stop = _file_progress(sources, quiet)
    kwargs: dict[str, Any] = {"limit": limit or None} if fmt is OutputFormat.table else {}
    with contextlib.ExitStack() as stack:
        stack.callback(stop)
        sink: Any
        if output is None:
            sink = sys.stdout
            header_done = False
        elif append:
            header = ",".join(CSV_COLUMNS) + "\n" if fmt is OutputFormat.csv else ""
            sink = stack.enter_context(append_lines(output, fmt=fmt.value, header=header))
            header_done = sink.had_lines
        else:
            sink = stack.enter_context(atomic_write(output))
            header_done = False
        batches = stream_scores(sources, model=m, threshold=threshold, device=device.value, totals=totals,
                                on_file=on_file, state=state, engine=engine.value)  # fmt: skip
        for table in batches:
            rows = select_rows(table, include_all=all_flows, by_score=fmt is OutputFormat.table)
            if fmt is OutputFormat.table and not len(rows):
                continue
            to_terminal = fmt is OutputFormat.table and sink is sys.stdout  # rich sees the terminal
            text = render(table, rows, fmt.value, **kwargs, **({"fh": sink} if to_terminal else {}))
            if fmt is OutputFormat.csv:
                text = _without_header(text) if header_done else text
                header_done = True
            if text:
                sink.write(text)
                sink.flush()
    for name, message in totals.failures:
        warn(f"skipped {name}: {message}")
    if not quiet:
        say(
            f"{totals.n_anomalies} of {totals.n_flows} flows anomalous (threshold {totals.threshold:.4g}, "
            f"streamed in {totals.n_batches} batch{'' if totals.n_batches == 1 else 'es'})"
            + (f"; wrote {output}" if output else "")
        )
    if totals.failures:
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_ANOMALIES if totals.n_anomalies else EXIT_OK)


@app.command(help="Score captures and write one self-contained HTML report to read in a browser.\n\n" + EXIT_HELP)
@handle_errors
def report(
    paths: Annotated[list[str], typer.Argument(help="Capture files or directories; - reads standard input.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file from `netae train`.")] = Path("model.netae"),
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write (atomically).")] = Path(
        "report.html"
    ),
    labels: Annotated[
        Path | None, typer.Option("--labels", "-l", help="Labels CSV: colour benign and attack flows.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Anomalous flows shown in the table.")] = 25,
    threshold: Annotated[
        float | None, typer.Option(help="Override the model's threshold.", callback=_finite_threshold)
    ] = None,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr on success.")] = False,
) -> None:
    from netae.evaluate import match_labels, read_labels
    from netae.pipeline import expand_inputs
    from netae.report import render_report

    _quiet(quiet)
    label_table = read_labels(labels) if labels is not None else None
    sources = expand_inputs(paths)
    _stdin_open(sources)
    _check_output(output, inputs=sources, model=model)
    run = _score_with_progress(sources, model=model, threshold=threshold, device=device, quiet=quiet)
    matched = match_labels(run.table, label_table) if label_table is not None else None
    _write_report(output, render_report(run, labels=matched, top_n=top, title=_report_title(sources)))
    _finish_scoring(run, quiet, [output], anomalies_status=False)  # the page is the result: 0, or 3


@app.command()
@handle_errors
def info(
    model: Annotated[Path, typer.Argument(help="Model file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Show what a model was trained on, when, with which settings, and its threshold."""
    import json

    from netae.modelfile import load_model

    m = load_model(model)
    if as_json:
        sys.stdout.write(json.dumps(_strict_json(m.to_meta()), indent=2, sort_keys=True, allow_nan=False) + "\n")
        return
    # Metadata is the model author's text: one line each, controls escaped (issue 21).
    sys.stdout.write("\n".join(printable(line) for line in _info_lines(model, m)) + "\n")


def _info_lines(path: Path, m: TrainedModel) -> list[str]:
    import json

    tr, th, s = m.training, m.threshold, m.settings
    lines = [
        f"model        {path} (id {m.model_id})",
        f"created      {m.created} by netae {m.netae_version} (schema {m.schema_version})",
        f"trained on   {', '.join(tr.inputs)}",
        f"             {tr.flows} flows, {tr.packets} packets ({tr.fit_flows} fit, {tr.val_flows} validation)",
        f"training     {tr.epochs} epochs (best {tr.best_epoch}) on {tr.device}, {tr.seconds} s",
        f"threshold    {th.value_:.6g} ({th.strategy}, {json.dumps(th.params, sort_keys=True)})"
        + (f", fitted on {m.threshold_engine} scores" if m.threshold_engine else ""),
        f"flows        idle {s.flows.idle_timeout_s} s, active {s.flows.active_timeout_s} s, "
        f"window {s.flows.max_packets} packets",
        f"model        LSTM autoencoder, hidden {s.model.hidden_size}, layers {s.model.num_layers}",
        f"context      {'on' if s.context.enabled else 'off'} (window {s.context.window_s} s)",
        f"features     {m.n_features}: {', '.join(m.feature_names)}",
    ]
    if tr.history:
        last = tr.history[-1]
        lines.append(f"final loss   train {last.train_loss:.5f}, validation {last.val_loss:.5f}")
    cal = m.calibration
    if cal is not None:
        lines.append(
            f"calibrated   {cal.created} on {', '.join(cal.inputs)}: "
            f"{cal.flows} flows, threshold {cal.previous_threshold} -> {th.value_}"
            + (" (forced past the guards)" if cal.forced else "")
        )
    for old in m.extra.get("threshold_history") or []:
        if isinstance(old, dict):
            lines.append(
                f"earlier      threshold {old.get('value')} ({old.get('strategy')}), until {old.get('replaced')}"
            )
    return lines


@app.command()
@handle_errors
def featurize(
    paths: Annotated[list[str], typer.Argument(help="Capture files or directories; - reads standard input.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="FILE.parquet, or a directory for one shard per capture.")
    ],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file.")] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Parallel processes (directory output); at most one per input and per core."),
    ] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write flows and their per-packet feature sequences to Parquet (a file, or a sharded dataset)."""
    from netae.config import load_settings
    from netae.extras import require
    from netae.pipeline import expand_inputs
    from netae.workflow import featurize_to

    require("pyarrow", "netae featurize")
    _quiet(quiet)
    settings = load_settings(config)
    sources = expand_inputs(paths)
    _stdin_open(sources)
    _check_output(output, inputs=sources)
    results = featurize_to(sources, output, settings=settings, workers=workers)
    failed = [r for r in results if r.error]
    for r in results:
        for message in r.warnings if not quiet else ():
            warn(message if message.startswith(r.source) else f"{r.source}: {message}")
    for r in failed:
        warn(f"skipped {r.source}: {r.error}")
    if not quiet:
        records = sum(r.records for r in results)
        skipped: dict[str, int] = {}
        for r in results:
            for k, v in r.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        flows = sum(r.flows for r in results)
        from netae.capture.skips import skip_summary

        detail = skip_summary(skipped) or "none"
        say(
            f"read {records} records from {len(results) - len(failed)} of {len(results)} capture(s); "
            f"skipped: {detail}; " + (f"{flows} flows; " if output.suffix != ".parquet" else "") + f"wrote {output}"
        )
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


class EvalFormat(enum.StrEnum):
    text = "text"
    json = "json"


@app.command()
@handle_errors
def evaluate(
    paths: Annotated[list[str], typer.Argument(help="Labelled capture files.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file.")] = Path("model.netae"),
    labels: Annotated[Path, typer.Option("--labels", "-l", help="Labels CSV (src_ip,...,label).")] = Path("labels.csv"),
    fmt: Annotated[EvalFormat, typer.Option("--format", "-f", help="text or json.")] = EvalFormat.text,
    threshold: Annotated[
        float | None, typer.Option(help="Override the model's threshold.", callback=_finite_threshold)
    ] = None,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Measure detection against labelled flows: ROC-AUC, precision, detection at low FPR, per attack.

    Exit status 0 when the evaluation ran (2 on errors), whatever the scores.
    """
    import json

    from netae.evaluate import (
        evaluate_scores,
        format_evaluation,
        format_incident_ranks,
        incident_ranks,
        match_labels,
        read_labels,
    )
    from netae.output import table_incidents
    from netae.pipeline import expand_inputs

    _quiet(quiet)
    table_labels = read_labels(labels)
    sources = expand_inputs(paths)
    run = _score_with_progress(sources, model=model, threshold=threshold, device=device, quiet=quiet)
    matched = match_labels(run.table, table_labels)
    ev = evaluate_scores(run.table.score, matched, threshold=run.table.threshold)
    ranks = incident_ranks(matched, table_incidents(run.table))
    if fmt is EvalFormat.json:
        doc = {**ev.to_dict(), "incident_ranks": ranks.to_dict()}
        sys.stdout.write(json.dumps(_strict_json(doc), indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(format_evaluation(ev) + "\n" + format_incident_ranks(ranks))


@app.command()
@handle_errors
def calibrate(
    model: Annotated[Path, typer.Argument(help="Model file to recalibrate (left as it is unless --in-place).")],
    paths: Annotated[list[str], typer.Argument(help="Benign captures to fit the threshold on.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="New model file to write.")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Replace MODEL itself (atomically).")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write even when the guards object (threshold moves > 10x, > 5% flagged).")
    ] = False,
    strategy: Annotated[str | None, typer.Option(help="quantile, meanstd or spot (default: the model's).")] = None,
    quantile: Annotated[
        float | None, typer.Option(help="Quantile for the quantile strategy (implies it without --strategy).")
    ] = None,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Refit a model's threshold on new benign captures, without retraining; write a new model file.

    Refuses, unless --force, when the threshold would move more than 10x either way or when the
    current model already flags more than 5% of the calibration flows. The previous threshold is
    kept in the model's history (``netae info``).
    """
    from netae.pipeline import expand_inputs
    from netae.workflow import calibrate_model

    _quiet(quiet)
    if output is None and not in_place:
        raise typer.BadParameter("give -o NEW_MODEL, or --in-place to replace MODEL", param_hint="'--output' / '-o'")
    if output is not None and in_place:
        raise typer.BadParameter("give either -o NEW_MODEL or --in-place, not both", param_hint="'--in-place'")
    sources = expand_inputs(paths)
    _stdin_open(sources)
    target = output if output is not None else model
    _check_output(output, inputs=[*sources, str(model)])
    on_file, stop = _file_progress(sources, quiet)
    try:
        cal = calibrate_model(
            model, sources, output=target, strategy=strategy, quantile=quantile, device=device.value, force=force,
            on_file=on_file,
        )  # fmt: skip
    finally:
        stop()
    for concern in cal.concerns:
        warn(f"{concern} (written anyway: --force)")
    if not quiet:
        say(
            f"threshold {cal.old:.4g} -> {cal.new.value_:.4g} ({cal.new.strategy}); the old model flagged "
            f"{cal.flagged_fraction:.1%} of the calibration flows; wrote {target}"
        )


def main() -> None:
    """Run the app (``netae.__main__.main`` guards this module's own import)."""
    try:
        app(prog_name="netae")
    except BrokenPipeError:
        _quiet_broken_pipe()
        sys.exit(EXIT_OK)
    except SystemExit as exc:
        _exit_past_readers(exc)
        raise
    except Exception as exc:  # raised outside a command (option parsing, callbacks): still a bug
        _internal_error(exc)
        sys.exit(EXIT_INTERNAL)


def _exit_past_readers(exc: SystemExit) -> None:
    """Exit at once when a daemon thread may still block in a read of standard input (live input).

    Finalizing the interpreter would wait for that thread's lock on stdin and abort (SIGABRT)
    instead of exiting with the status. Every file was closed and every temporary file removed
    by the time the command returned, so only the standard streams need flushing.
    """
    if not any(t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


__all__ = ["app", "main"]
