"""Compile a pipeline's mapping spec and apply it to Arrow batches of raw records.

    compiled = compile_mapping(spec.mapping)   # SpecError lists every problem with its path
    result = compiled.apply(batch)             # rows, dead letters, filtered count

Modules: `paths` (the JSONPath subset), `expressions` (lexer, parser, syntax tree),
`typecheck`, `compute` (evaluation on Arrow: `values`, `arithmetic`, `functions`), `casts`
and `timestamps` (type rules), `rules` (validate), `deadletters` (who fails and why), `raw`
(parsing the raw records), `compiler` (check and compile a spec), `engine` (apply it).
"""

from dash_ray.mapping.compiler import compile_mapping
from dash_ray.mapping.deadletters import DEAD_LETTER_SCHEMA
from dash_ray.mapping.engine import CompiledMapping, MappingResult

__all__ = ["DEAD_LETTER_SCHEMA", "CompiledMapping", "MappingResult", "compile_mapping"]
