"""Command-line error reports for `convnets.main`: a few lines that name the file or field and the fix.

A bad command line (missing or broken config file, unknown field, wrong value type) is reported before anything
runs and exits with status 2; an error the project raises on purpose while running (a dataset that cannot be
prepared or read, an incompatible or damaged checkpoint, a diverging loss, a busy workdir, ...) exits with status 1.
Any other exception keeps its traceback. --verbose_errors (or CONVNETS_TRACEBACK=1) shows every traceback.
"""

import difflib
import importlib.util
import linecache
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import flags, logging
from ml_collections import ConfigDict

FLAGS = flags.FLAGS

SCHEMA = 'experiments/default.py'
USAGE_ERROR, RUN_ERROR = 2, 1
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CONFIG_ARG = re.compile(r'^--?config(?:=(.*))?$', re.DOTALL)
_OVERRIDE_ARG = re.compile(r'^--?(?:no)?config\.([^=]+)(?:=(.*))?$', re.DOTALL)
_TYPE_WORDS = {int: 'an integer', float: 'a number', bool: 'True or False', str: 'a string',
               tuple: "a tuple, e.g. '(1, 2)'", list: "a list, e.g. '[1, 2]'"}


# ---- Reporting ------------------------------------------------------------------------------------------------

def verbose(argv: Sequence[str] = ()) -> bool:
    """Whether errors keep their traceback; read before flags are parsed too (a parsing error has no FLAGS)."""
    if os.environ.get('CONVNETS_TRACEBACK', '') not in ('', '0'):
        return True
    if any(re.fullmatch(r'--?verbose_errors(=(true|1))?', a, re.IGNORECASE) for a in argv):
        return True
    return bool(FLAGS.is_parsed() and FLAGS.verbose_errors)


def fail(message: str, status: int) -> None:
    """Prints `error: message` (and how to see a traceback) on stderr and exits with `status`."""
    logging.flush()
    sys.stdout.flush()
    print(f'error: {message}', file=sys.stderr)
    if status == RUN_ERROR:
        print('(--verbose_errors or CONVNETS_TRACEBACK=1 shows the traceback)', file=sys.stderr)
    sys.stderr.flush()
    sys.exit(status)


# ---- The command line: config file and overrides --------------------------------------------------------------

def _experiments_dir() -> str:
    spec = importlib.util.find_spec('experiments')
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.join(os.path.dirname(_PACKAGE_DIR), 'experiments')


def _experiment_files() -> list[str]:
    directory = _experiments_dir()
    return sorted(f for f in os.listdir(directory) if f.endswith('.py') and not f.startswith('_'))


def _shown(path: str) -> str:
    """`path` relative to the working directory if it lies below it, else absolute: what a user would type."""
    path = os.path.abspath(path)
    return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def _config_arg(argv: Sequence[str]) -> str | None:
    """The value of --config in `argv` (`--config=path` or `--config path`), or None if absent."""
    for i, arg in enumerate(argv[1:], 1):
        if m := _CONFIG_ARG.match(arg):
            return m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def _overrides(argv: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(flag as typed, field path, value or None) of every --config.FIELD override in `argv`."""
    out = []
    for i, arg in enumerate(argv[1:], 1):
        if m := _OVERRIDE_ARG.match(arg):
            value = m.group(2)
            if value is None and not arg.lstrip('-').startswith('no') and i + 1 < len(argv):
                value = argv[i + 1] if not argv[i + 1].startswith('-') else None
            out.append((arg.split('=', 1)[0], m.group(1), value))
    return out


def _missing_config_message(path: str) -> str | None:
    file = path.split(':', 1)[0]
    if os.path.isfile(file):
        return None
    names = _experiment_files()
    shown = _shown(_experiments_dir())
    stems = {name.removesuffix('.py'): name for name in names}
    close = difflib.get_close_matches(os.path.basename(file).removesuffix('.py'), stems, n=3, cutoff=0.6)
    hint = f' Did you mean {" or ".join(os.path.join(shown, stems[c]) for c in close)}?' if close else ''
    return (f'config file {file!r} not found (relative paths start in {os.getcwd()}).{hint}\n'
            f'The experiments are {shown}/*.py: {", ".join(names)}')


def _load_config(path: str) -> ConfigDict:
    """The config `path` ('file.py' or 'file.py:arg') defines, loaded as ml_collections does (error paths only)."""
    file, *args = path.split(':', 1)
    spec = importlib.util.spec_from_file_location('convnets_config_check', file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def _config_code_message(error: BaseException, config_file: str) -> str | None:
    """`file, line N: message` for an error in the config file (or an experiments/ file it imports)."""
    chain, e = [], error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, SyntaxError) and e.filename and e.filename.endswith('.py'):
            text, caret = (e.text or '').rstrip('\n'), ''
            if text.strip() and e.offset:
                indent = len(text) - len(text.lstrip())
                caret = f'\n    {text.strip()}\n    {" " * max(0, e.offset - 1 - indent)}^'
            return f'config file {_shown(e.filename)}, line {e.lineno}: {e.msg}{caret}'
    ours = {os.path.abspath(config_file), _experiments_dir()}
    for e in chain:
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) in ours or os.path.dirname(os.path.abspath(f.filename)) in ours]
        if frames:
            f = frames[-1]
            return (f'config file {_shown(f.filename)}, line {f.lineno} (in {f.name}): '
                    f'{type(e).__name__}: {e}\n    {f.line}')
    return None


def _field_paths(config: ConfigDict, prefix: str = '') -> list[str]:
    paths = []
    for key, value in config.items():
        paths.append(prefix + key)
        if isinstance(value, ConfigDict):
            paths.extend(_field_paths(value, f'{prefix}{key}.'))
    return paths


def _unknown_field_message(config: ConfigDict, flag: str, path: str) -> str | None:
    """What is wrong with the field path of an override (unknown name, not a group), or None if it exists."""
    holder, walked = config, []
    for part in path.split('.'):
        name = part.split('[', 1)[0]  # ml_collections also accepts field[index].
        if not isinstance(holder, ConfigDict):
            kind = type(holder).__name__ if holder is not None else 'unset'
            return (f'{flag}: {".".join(walked)} is a single value ({kind}), not a group of fields, so it has no '
                    f'field {name!r}. The config schema is in {SCHEMA}.')
        if name not in holder:
            here = '.'.join(walked + [name])
            local = [('.'.join(walked + [c])) for c in difflib.get_close_matches(name, list(holder.keys()), 3, 0.6)]
            # Also fields of that name (or close) elsewhere: `--config.learning_rate` is optimizer.learning_rate.
            anywhere = [p for p in _field_paths(config)
                        if difflib.get_close_matches(name, [p.rsplit('.', 1)[-1]], 1, 0.8)]
            close = list(dict.fromkeys(local + anywhere))[:3]
            hint = f' Did you mean {" or ".join(close)}?' if close else ''
            return f'{flag}: the config has no field {here!r}.{hint} The config schema is in {SCHEMA}.'
        holder = holder[name]
        walked.append(name)
    return None


def _field_type(config: ConfigDict, path: str) -> tuple[type | None, object]:
    *parents, leaf = path.split('.')
    holder = config
    for part in parents:
        holder = holder[part]
    return holder.get_type(leaf), holder[leaf]


def _wrong_type_message(config: ConfigDict, config_file: str, flag: str, path: str, value: str | None,
                        detail: str) -> str:
    field_type, current = _field_type(config, path)
    expected = _TYPE_WORDS.get(field_type, getattr(field_type, '__name__', str(field_type)))
    example = shlex.quote(current if isinstance(current, str) else repr(current))
    message = (f'{flag}={value}: {path} must be {expected}, got {value!r} '
               f'({_shown(config_file)} sets it to {current!r}: e.g. {flag}={example}).')
    if field_type in (tuple, list):
        message += f'\n{detail}'
    return message


def _parse_error_message(error: Exception, argv: Sequence[str], config_path: str | None) -> str | None:
    """A few lines for an error of absl/ml_collections flag parsing, or None if it is not understood."""
    config_file = (config_path or '').split(':', 1)[0]
    if config_path and (message := _config_code_message(error, config_file)):
        return message
    if config_path and isinstance(error, AttributeError) and "'get_config'" in str(error):
        return (f'config file {_shown(config_file)} defines no get_config(): an experiment file defines '
                'get_config() returning the config (see experiments/quickstart.py).')
    overrides = _overrides(argv)
    config = None
    if config_path and overrides:
        try:
            config = _load_config(config_path)
        except Exception:  # The config loaded once already; if not now, fall back to the library's message.
            config = None
    if isinstance(config, ConfigDict):
        for flag, path, _ in overrides:
            if message := _unknown_field_message(config, flag, path):
                return message
        if isinstance(error, flags.IllegalFlagValueError):
            for flag, path, value in reversed(overrides):
                if str(error).startswith(f'flag --config.{path}='):
                    detail = str(error).split(': ', 1)[-1]
                    return _wrong_type_message(config, config_file, flag, path, value, detail)
    if isinstance(error, flags.Error | ValueError):
        # absl's own messages are short already (unknown flag with suggestions, missing --workdir, flag order).
        return f'{error}\nRun with --helpshort to see the flags.'
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a few lines instead of a traceback for a broken --config file or override."""
    config_path = _config_arg(argv)
    if config_path is not None and (message := _missing_config_message(config_path)):
        fail(message, USAGE_ERROR)
    try:
        return FLAGS(argv)
    except Exception as e:  # Whatever a config file or an override raises; unknown ones keep their traceback.
        if verbose(argv) or (message := _parse_error_message(e, argv, config_path)) is None:
            raise
    fail(message, USAGE_ERROR)


# ---- Errors while running -------------------------------------------------------------------------------------

def _raised_here(error: BaseException) -> bool:
    """Whether a `raise` statement of this package or experiments/ raised `error` (a message meant for users).

    A library's exception, or one Python raises inside our code (a bug: unpacking, None arithmetic), is not.
    """
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
    ours = filename.startswith(_PACKAGE_DIR + os.sep) or filename.startswith(_experiments_dir() + os.sep)
    return ours and linecache.getline(filename, tb.tb_lineno).lstrip().startswith('raise')


def run_error_message(error: BaseException) -> str | None:
    """The one-paragraph report of an error raised while running, or None to keep its traceback.

    Reported: the project's own exception types (IncompatibleCheckpointError, NonFiniteLossError,
    DamagedDatasetError, ...) and ValueError / TypeError / OSError / RuntimeError raised on purpose by the
    project's code (a `raise` statement in convnets/ or experiments/, whose message says what to do).
    """
    if type(error).__module__.startswith('convnets.'):
        return f'{type(error).__name__}: {error}'
    if isinstance(error, ValueError | TypeError | OSError | RuntimeError) and _raised_here(error):
        return str(error)
    return None


def run_reporting_errors(body: Callable[[], None]) -> None:
    """Runs a command's `body`; an error meant for users (`run_error_message`) becomes a short report and exit
    status 1, any other keeps its traceback (as do all with --verbose_errors)."""
    try:
        body()
    except Exception as e:
        if verbose() or (message := run_error_message(e)) is None:
            raise
    else:
        return
    fail(message, RUN_ERROR)  # outside the handler: the report is not chained to the exception
