"""System tests (marked `system`): real daemons, kill -9, the simulation, the browser, the demo and the README."""
