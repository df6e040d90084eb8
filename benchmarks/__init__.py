"""Side-by-side benchmarks of specop against scipy, PyHessian, curvlinops, hessian-eigenthings and matfree."""
