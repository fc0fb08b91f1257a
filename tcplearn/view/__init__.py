"""The view layer: data in, figure or widget out.  ``plots`` draws, ``show`` tells IPython
how to display each experiment's result, ``widgets`` is the sysctl playground."""
