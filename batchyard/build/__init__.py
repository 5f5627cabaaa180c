"""Making request files from data: templates and fan-out.

Owns `Request` and `spool_requests` (requests given in memory), `build_file` (a TOML
template rendered for every row of a CSV or JSONL data file),
`expand_file` and `Variation` (each line multiplied into variants: `--vary KEY=A,B`,
`--samples N`), the variant custom_id form (`variant_id`, `split_variant`) and
`BuildReport`. Output is validated by `batchyard.ingest` exactly as `submit` validates it,
and every problem names the data row and the field. It must not touch the store or the
API; the orchestrator and the CLI hand its output file to `plan` and `submit`.

A template:

    endpoint = "/v1/chat/completions"        # the default
    model = "gpt-4o-mini"                    # may hold placeholders too
    custom_id = "q-{{ id }}"                 # or custom_id_column = "id"; default row-N
    [body]
    max_tokens = 200
    [[body.messages]]
    role = "user"
    content = "Answer briefly: {{ question }}"
"""

from batchyard.build._data import Row, read_rows, row_name
from batchyard.build._fanout import SEPARATOR, Dimension, Variation, split_variant, variant_id
from batchyard.build._memory import Request, RequestLike, spool_requests
from batchyard.build._template import RenderProblem, Template, load_template
from batchyard.build._write import BuildReport, build_file, expand_file

__all__ = [
    "SEPARATOR",
    "BuildReport",
    "Dimension",
    "RenderProblem",
    "Request",
    "RequestLike",
    "Row",
    "Template",
    "Variation",
    "build_file",
    "expand_file",
    "load_template",
    "read_rows",
    "row_name",
    "split_variant",
    "spool_requests",
    "variant_id",
]
