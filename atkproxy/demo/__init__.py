"""The example workflow backend and callback receiver behind `atkproxy demo` and the tests."""
