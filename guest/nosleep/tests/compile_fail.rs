//! Sleeping while an atomic pte map is live does not compile.
#[test]
fn sleeping_inside_an_atomic_map_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

/// The same code with the allocation moved before the map (the fix) compiles.
#[test]
fn allocating_before_the_map_compiles() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
}
