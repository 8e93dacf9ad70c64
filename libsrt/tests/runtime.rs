//! libsrt is started with the first socket and cleaned up with the last (a test
//! binary of its own: no other test's sockets in the same process).

use mirror_libsrt::{is_running, wait_cleaned_up, Socket};

#[test]
fn libsrt_runs_while_a_socket_lives_and_starts_again_after() {
    assert!(!is_running());
    let first = Socket::new().unwrap();
    let second = Socket::new().unwrap();
    assert!(is_running());
    drop(first);
    assert!(is_running(), "one socket is still alive");
    drop(second);
    assert!(!is_running(), "cleaned up with the last socket");
    // And started again for the next one.
    let again = Socket::new().unwrap();
    assert!(is_running());
    again.bind(([127, 0, 0, 1], 0).into()).unwrap();
    assert!(again.local_addr().unwrap().port() > 0);
    assert!(!wait_cleaned_up(), "a socket is alive");
    drop(again);
    assert!(!is_running());
    // Both runtimes' cleanups have finished: nothing of libsrt runs at exit.
    assert!(wait_cleaned_up());
    assert!(wait_cleaned_up(), "and again: nothing left to wait for");
}
