"""Which configuration to ship: constraints, an interval-respecting Pareto frontier, the recommendation.

`constraints` parses `p99<=20ms`-style bounds and objectives; `figures` reads each configuration's
figures with their intervals from typed records; `frontier` decides; `render`, `chart` and
`modelreport` turn a decision into text, JSON, a PNG and the course's model report. docs/select.md.
"""

from cnnbench.select.constraints import Constraint, Objective, SelectError, parse_constraint, parse_objective
from cnnbench.select.figures import Config, configs_of
from cnnbench.select.frontier import Selection, select

__all__ = ["Constraint", "Objective", "SelectError", "parse_constraint", "parse_objective", "Config", "configs_of", "Selection", "select"]
