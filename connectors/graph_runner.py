"""Rasa's predict graph run in order, without dask's scheduler: the same nodes, the same results.

Rasa 3.6 runs its model graph (NLU pipeline, then the policies) through `DaskGraphRunner`,
twice per patient message at least (parse, then each next-action prediction). For a graph of
a dozen nodes run on one thread, dask's synchronous scheduler (its ordering, its task states)
and the pruned schema Rasa rebuilds for every run cost more than running the nodes: profiled,
about 8% of the Rasa process's CPU per message (issue 19). `InOrderGraphRunner` runs the same
pruned schema's nodes in a topological order worked out once per list of targets, hands each
node what dask would (each need's `(name, output)`, or the name alone for an input not given),
and raises what dask's runner raises. `install()` makes the processor load its model with it:
`rasa.core.processor` names `DaskGraphRunner` when it loads one (Rasa's version is pinned;
the test of this module fails if that changes).
"""

from __future__ import annotations

import graphlib
from typing import Any

import rasa.core.processor
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner


class InOrderGraphRunner(DaskGraphRunner):
    """DaskGraphRunner's `run`, with the nodes called in an order kept per list of targets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._orders: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]] = {}

    def run(self, inputs: dict[str, Any] | None = None,
            targets: list[str] | None = None) -> dict[str, Any]:
        run_targets = targets if targets else self._graph_schema.target_names
        order = self._order(tuple(run_targets))
        node_names = {name for name, _ in order}
        # A node's output as dask holds it: (node name, output); an input as Rasa's runner adds
        # it to the dask graph, in place of a node of the same name.
        outputs: dict[str, Any] = {}
        for name, value in (inputs or {}).items():
            if isinstance(value, str) and value in node_names | outputs.keys():
                raise GraphRunError(
                    f"Input value '{value}' clashes with a node name. Make sure "
                    f"that none of the input names passed to the `run` method are the "
                    f"same as node names in the graph schema.")
            outputs[name] = (name, value)
        try:
            for name, needs in order:
                if name not in outputs:
                    # A need nothing provides reaches the node as its bare name, as in dask.
                    outputs[name] = self._instantiated_nodes[name](
                        *(outputs.get(need, need) for need in needs))
            return dict(outputs[target] for target in run_targets)
        except RuntimeError as e:
            raise GraphRunError("Error running runner.") from e

    def _order(self, targets: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
        """The nodes the targets need, each after the nodes it needs, with its needs."""
        if targets not in self._orders:
            schema = self._graph_schema.minimal_graph_schema(list(targets))
            needs = {name: tuple(node.needs.values()) for name, node in schema.nodes.items()}
            sorter = graphlib.TopologicalSorter(
                {name: [need for need in node_needs if need in needs]
                 for name, node_needs in needs.items()})
            self._orders[targets] = [(name, needs[name]) for name in sorter.static_order()]
        return self._orders[targets]


def install() -> None:
    rasa.core.processor.DaskGraphRunner = InOrderGraphRunner
