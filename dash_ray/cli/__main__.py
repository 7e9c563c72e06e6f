"""`python -m dash_ray.cli`: the `dash-ray` command."""

import sys

from dash_ray.cli.commandline import main

sys.exit(main())
