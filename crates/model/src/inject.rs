//! Kernel failures injected into memsrv's invocations, to test that memsrv
//! undoes what a failed request did. An injected failure is what the real
//! kernel does when it refuses an invocation: an error number and no effect.

use capbuf_protocol::Invocation;
use capbuf_server::KernelError;

use crate::Model;

/// One failure the model injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injected {
    /// Which of memsrv's invocations it was, counting from 1 at the model's creation.
    pub number: u64,
    /// The invocation refused.
    pub invocation: Invocation,
    /// The seL4 error returned.
    pub error: KernelError,
}

/// The model's injection state: memsrv's invocations counted, failures to come, failures done.
#[derive(Clone, Debug, Default)]
pub(crate) struct Injector {
    invocations: u64,
    pending: Vec<(u64, KernelError)>,
    injected: Vec<Injected>,
}

impl Injector {
    /// The failures planned and not yet injected, by invocation number.
    pub(crate) fn pending(&self) -> &[(u64, KernelError)] {
        &self.pending
    }

    /// Count one invocation; refuse it if a failure was planned for it.
    pub(crate) fn invoke(&mut self, invocation: Invocation) -> Result<(), KernelError> {
        self.invocations += 1;
        let number = self.invocations;
        let Some(index) = self.pending.iter().position(|(n, _)| *n == number) else { return Ok(()) };
        let (_, error) = self.pending.swap_remove(index);
        self.injected.push(Injected { number, invocation, error });
        Err(error)
    }
}

impl Model {
    /// Make the `nth` kernel invocation memsrv makes from now on (1: the
    /// next one) fail with `error`, without effect, as the kernel refuses an
    /// invocation. Any of retype, copy, mutate, revoke, delete, page-table
    /// map and frame map counts; a client's own capability operations do not.
    pub fn fail_invocation(&mut self, nth: u64, error: KernelError) {
        assert!(nth > 0, "the first invocation from now is 1");
        let number = self.injector.invocations + nth;
        self.injector.pending.push((number, error));
    }

    /// Forget the failures planned that have not happened.
    pub fn clear_failures(&mut self) {
        self.injector.pending.clear();
    }

    /// Kernel invocations memsrv has made, refused ones included.
    pub fn invocations(&self) -> u64 {
        self.injector.invocations
    }

    /// Every failure injected so far, in order.
    pub fn injected(&self) -> &[Injected] {
        &self.injector.injected
    }
}
