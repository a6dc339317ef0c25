"""``prepare.py <corpus>`` / ``asr-prepare <corpus>``: download, verify, extract a corpus and write its
manifests, then print one row per manifest (utterances, hours, files skipped, path).

Corpora: ``librispeech`` (OpenSLR 12, also ``scripts/prepare_librispeech.py``), ``mini_librispeech``
(OpenSLR 31) and ``an4`` (CMU). The options every corpus has (``--root``, ``--source``,
``--mirror``, ``--no-download``, ``--md5sums``, ``--keep-archives``) are defined here; a corpus
class adds its own with ``add_arguments`` and turns them into constructor arguments with
``options``. Exit status 0, or 2 with one line per problem on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

from asr.cli.common import program, setup_logging
from asr.data.corpora.an4 import AN4Corpus
from asr.data.corpora.archive import read_md5sums, summarize
from asr.data.corpora.base import CorpusError
from asr.data.corpora.librispeech import LibriSpeechCorpus, MiniLibriSpeechCorpus
from asr.report import format_table

CORPORA: Mapping[str, type] = {"librispeech": LibriSpeechCorpus, "mini_librispeech": MiniLibriSpeechCorpus,
                               "an4": AN4Corpus}
DESCRIPTION = ("Download, verify, extract {name} and write its manifests. Run it again to finish an interrupted "
               "preparation; what is done is not redone.")


def build_parser(prog: str, corpus: str | None = None) -> argparse.ArgumentParser:
    """One corpus's options (``corpus``), or one sub-command per corpus."""
    if corpus is not None:
        parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION.format(name=CORPORA[corpus].name))
        _add_options(parser, CORPORA[corpus])
        parser.set_defaults(corpus=corpus)
        return parser
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION.format(name="a corpus"))
    commands = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS",
                                     help=" | ".join(CORPORA))
    for name, cls in CORPORA.items():
        _add_options(commands.add_parser(name, help=f"prepare {cls.name}",
                                         description=DESCRIPTION.format(name=cls.name)), cls)
    return parser


def _add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--root", default=cls.default_root, help="where to prepare the corpus (default %(default)s; "
                                                                 "training reads it from data.root)")
    cls.add_arguments(parser)
    parser.add_argument("--source", help="a folder with the archives or extracted folders you already have; "
                                         "extracted ones are used where they are")
    parser.add_argument("--mirror", default=cls.default_mirror, help="base URL to download from (default %(default)s)")
    parser.add_argument("--no-download", action="store_true", help="use only what is in --root and --source")
    parser.add_argument("--md5sums", help="an md5sum.txt ('<md5>  <file>' lines) to verify against instead of the "
                                          "published values (a mirror with its own archives, or a pinned copy)")
    parser.add_argument("--keep-archives", action="store_true", help="keep downloaded archives after extraction")


def main(argv: Sequence[str] | None = None, prog: str | None = None, corpus: str | None = None) -> int:
    """Prepare the corpus the arguments name; return the exit status."""
    setup_logging()
    prog = prog or program("prepare.py")
    parser = build_parser(prog, corpus)
    args = parser.parse_args(argv)
    cls = CORPORA[args.corpus]
    name = prog if corpus is not None else f"{prog} {args.corpus}"
    try:
        checksums = {**cls.published_checksums, **(read_md5sums(args.md5sums) if args.md5sums else {})}
        prepared = cls(root=args.root, source=args.source, download=not args.no_download, mirror=args.mirror,
                       keep_archives=args.keep_archives, checksums=checksums, **cls.options(args))
        problems = prepared.prepare()
        manifests = prepared.manifests()
    except CorpusError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    for split, items in problems.items():
        for p in items:
            print(f"{name}: {split}: skipped {p.path}: {p.reason}", file=sys.stderr)
    rows = [[split, *summarize(m), len(problems.get(split, [])), str(m)] for split, m in manifests.items()]
    print(format_table([cls.split_label, "utterances", "hours", "skipped now", "manifest"], rows))
    return 0
