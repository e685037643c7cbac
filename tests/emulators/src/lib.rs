//! Local emulators of SaaS APIs.
