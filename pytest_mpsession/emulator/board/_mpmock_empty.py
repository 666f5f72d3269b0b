# (an empty module: the board's set-up makes its fake modules from copies of it)
