//! Macros the layers share.

/// `get_ref`, `get_mut` and `into_inner` for a middleware service whose wrapped
/// service is its `inner` field: written once for every layer's service.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Take the inner service back.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use inner_service_accessors;
