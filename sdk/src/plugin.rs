//! The three plugin traits and the adapters that connect them to the
//! generated WIT bindings. Plugin authors implement a trait and call the
//! matching `export_*!` macro; they never touch the bindings.

use crate::{
    Batch, ColumnBatch, ColumnsTransformed, DeliveredRow, DiffRequest, ObjectInfo, PluginError,
    PluginSpec, ReadRequest, RowResult, Transformed, Value, WriteTarget,
};

/// A source: reads rows out of a system, a batch at a time.
pub trait Source: 'static {
    /// The reader for one run.
    type Reader: Reader;

    fn spec() -> PluginSpec;
    /// Test the connection described by `config`.
    fn check(config: &str) -> Result<(), PluginError>;
    /// The objects (tables, files) this source can read.
    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError>;
    /// Start reading a query or an object.
    fn read(config: &str, request: ReadRequest) -> Result<Self::Reader, PluginError>;
}

/// An open read.
pub trait Reader: 'static {
    /// The next batch of at most `max_rows` rows, or `None` at the end.
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError>;
}

/// A transform: batch in, batch out, with per-row errors.
pub trait Transform: Sized + 'static {
    fn spec() -> PluginSpec;
    /// Validate `config` without transforming anything.
    fn check(config: &str) -> Result<(), PluginError> {
        Self::open(config).map(|_| ())
    }
    /// Prepare for one run.
    fn open(config: &str) -> Result<Self, PluginError>;
    /// Transform one batch. Rows that fail are reported with
    /// [`Transformed::reject`] and left out of the output batch.
    fn transform(&mut self, batch: Batch) -> Result<Transformed, PluginError>;
}

/// A transform that works on whole columns ([`ColumnBatch`]): the fastest
/// shape for mappings over wide batches, since columns cross the boundary
/// in bulk and a column passed through or renamed costs nothing per row.
pub trait ColumnarTransform: Sized + 'static {
    fn spec() -> PluginSpec;
    /// Validate `config` without transforming anything.
    fn check(config: &str) -> Result<(), PluginError> {
        Self::open(config).map(|_| ())
    }
    /// Prepare for one run.
    fn open(config: &str) -> Result<Self, PluginError>;
    /// Transform one batch. Rows that fail are reported in `errors` and left
    /// out of every output column.
    fn transform(&mut self, batch: ColumnBatch) -> Result<ColumnsTransformed, PluginError>;
}

/// A destination: writes rows and reports one result per row.
pub trait Destination: 'static {
    /// The writer for one run.
    type Writer: Writer;

    fn spec() -> PluginSpec;
    fn check(config: &str) -> Result<(), PluginError>;
    /// The objects this destination can write, with their fields.
    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError>;
    /// Prepare a writer for one run.
    fn open(config: &str, target: WriteTarget) -> Result<Self::Writer, PluginError>;
}

/// A destination that can say which records it holds, so `sluice verify`
/// can find delivered records that are gone and have them sent again.
/// Export it with [`export_verifiable_destination!`](crate::export_verifiable_destination).
pub trait Lookup: Destination {
    /// For each of `ids`, whether `target.object` holds a record whose
    /// `target.identifier` field has that value; one answer per id, in order.
    fn exists(config: &str, target: WriteTarget, ids: Vec<Value>)
        -> Result<Vec<bool>, PluginError>;
}

/// A source that can estimate a read without running it (a warehouse's
/// dry run), so `sluice plan` can show what the query would scan.
/// Export it with [`export_estimable_source!`](crate::export_estimable_source).
pub trait Estimate: Source {
    /// The bytes `request` would scan, without reading a row.
    fn estimate_scan_bytes(config: &str, request: ReadRequest) -> Result<u64, PluginError>;
}

/// A source that diffs inside its warehouse (`diff: warehouse` on a
/// model): it keeps each sync's delivered snapshot there, returns only the
/// rows that changed, and records acknowledged rows when the host says so.
/// Export it with [`export_warehouse_diff_source!`](crate::export_warehouse_diff_source).
/// The content hash is [`crate::canonical`]'s form (`docs/warehouse-diff.md`).
pub trait WarehouseDiff: Source {
    /// The open diff.
    type DiffReader: Reader;
    /// Start the diff: the rows that are new or changed since the
    /// snapshot, each with `__sluice_hash` (16 bytes) after the model's
    /// columns.
    fn diff(config: &str, request: DiffRequest) -> Result<Self::DiffReader, PluginError>;
    /// Record rows the destination acknowledged in the sync's snapshot,
    /// all or none.
    fn advance(config: &str, sync: &str, rows: Vec<DeliveredRow>) -> Result<(), PluginError>;
}

/// An open write.
pub trait Writer: 'static {
    /// Write a batch; return exactly one result per row, in order.
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError>;
}

#[doc(hidden)]
pub mod adapters {
    use super::*;
    use crate::bindings::{
        columnar_transform, destination, estimate, lookup, source, transform, warehouse_diff,
    };
    use std::cell::RefCell;
    use std::marker::PhantomData;

    pub struct SourceAdapter<T>(PhantomData<T>);
    pub struct ReaderAdapter<T: Source>(RefCell<T::Reader>);

    impl<T: Source> source::exports::sluice::plugin::source_api::Guest for SourceAdapter<T> {
        type Reader = ReaderAdapter<T>;
        fn spec() -> PluginSpec {
            crate::log::report_panics();
            T::spec()
        }
        fn check(config: String) -> Result<(), PluginError> {
            crate::log::report_panics();
            T::check(&config)
        }
        fn discover(config: String) -> Result<Vec<ObjectInfo>, PluginError> {
            crate::log::report_panics();
            T::discover(&config)
        }
        fn read(
            config: String,
            request: ReadRequest,
        ) -> Result<source::exports::sluice::plugin::source_api::Reader, PluginError> {
            crate::log::report_panics();
            let reader = T::read(&config, request)?;
            Ok(source::exports::sluice::plugin::source_api::Reader::new(
                ReaderAdapter::<T>(RefCell::new(reader)),
            ))
        }
    }

    impl<T: Estimate> estimate::exports::sluice::plugin::estimate_api::Guest for SourceAdapter<T> {
        fn estimate_scan_bytes(config: String, request: ReadRequest) -> Result<u64, PluginError> {
            crate::log::report_panics();
            T::estimate_scan_bytes(&config, request)
        }
    }

    use warehouse_diff::exports::sluice::plugin::warehouse_diff_api as diff_api;

    pub struct DiffReaderAdapter<T: WarehouseDiff>(RefCell<T::DiffReader>);

    impl<T: WarehouseDiff> diff_api::Guest for SourceAdapter<T> {
        type DiffReader = DiffReaderAdapter<T>;
        fn diff(
            config: String,
            request: diff_api::DiffRequest,
        ) -> Result<diff_api::DiffReader, PluginError> {
            crate::log::report_panics();
            let reader = T::diff(&config, request)?;
            Ok(diff_api::DiffReader::new(DiffReaderAdapter::<T>(
                RefCell::new(reader),
            )))
        }
        fn advance(
            config: String,
            sync: String,
            rows: Vec<diff_api::DeliveredRow>,
        ) -> Result<(), PluginError> {
            crate::log::report_panics();
            T::advance(&config, &sync, rows)
        }
    }

    impl<T: WarehouseDiff> diff_api::GuestDiffReader for DiffReaderAdapter<T> {
        fn next(&self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
            crate::log::report_panics();
            self.0.borrow_mut().next(max_rows)
        }
    }

    impl<T: Source> source::exports::sluice::plugin::source_api::GuestReader for ReaderAdapter<T> {
        fn next(&self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
            crate::log::report_panics();
            self.0.borrow_mut().next(max_rows)
        }
    }

    pub struct TransformAdapter<T>(PhantomData<T>);
    pub struct TransformerAdapter<T>(RefCell<T>);

    impl<T: Transform> transform::exports::sluice::plugin::transform_api::Guest
        for TransformAdapter<T>
    {
        type Transformer = TransformerAdapter<T>;
        fn spec() -> PluginSpec {
            crate::log::report_panics();
            T::spec()
        }
        fn check(config: String) -> Result<(), PluginError> {
            crate::log::report_panics();
            T::check(&config)
        }
        fn open(
            config: String,
        ) -> Result<transform::exports::sluice::plugin::transform_api::Transformer, PluginError>
        {
            crate::log::report_panics();
            let t = T::open(&config)?;
            Ok(
                transform::exports::sluice::plugin::transform_api::Transformer::new(
                    TransformerAdapter(RefCell::new(t)),
                ),
            )
        }
    }

    impl<T: Transform> transform::exports::sluice::plugin::transform_api::GuestTransformer
        for TransformerAdapter<T>
    {
        fn transform(&self, input: Batch) -> Result<Transformed, PluginError> {
            crate::log::report_panics();
            self.0.borrow_mut().transform(input)
        }
    }

    pub struct ColumnarTransformAdapter<T>(PhantomData<T>);
    pub struct ColumnarTransformerAdapter<T>(RefCell<T>);

    use columnar_transform::exports::sluice::plugin::columnar_transform_api as columnar_api;

    impl<T: ColumnarTransform> columnar_api::Guest for ColumnarTransformAdapter<T> {
        type ColumnarTransformer = ColumnarTransformerAdapter<T>;
        fn spec() -> PluginSpec {
            crate::log::report_panics();
            T::spec()
        }
        fn check(config: String) -> Result<(), PluginError> {
            crate::log::report_panics();
            T::check(&config)
        }
        fn open(config: String) -> Result<columnar_api::ColumnarTransformer, PluginError> {
            crate::log::report_panics();
            let t = T::open(&config)?;
            Ok(columnar_api::ColumnarTransformer::new(
                ColumnarTransformerAdapter(RefCell::new(t)),
            ))
        }
    }

    impl<T: ColumnarTransform> columnar_api::GuestColumnarTransformer
        for ColumnarTransformerAdapter<T>
    {
        fn transform(&self, input: ColumnBatch) -> Result<ColumnsTransformed, PluginError> {
            crate::log::report_panics();
            self.0.borrow_mut().transform(input)
        }
    }

    pub struct DestinationAdapter<T>(PhantomData<T>);
    pub struct WriterAdapter<T: Destination>(RefCell<T::Writer>);

    impl<T: Destination> destination::exports::sluice::plugin::destination_api::Guest
        for DestinationAdapter<T>
    {
        type Writer = WriterAdapter<T>;
        fn spec() -> PluginSpec {
            crate::log::report_panics();
            T::spec()
        }
        fn check(config: String) -> Result<(), PluginError> {
            crate::log::report_panics();
            T::check(&config)
        }
        fn discover(config: String) -> Result<Vec<ObjectInfo>, PluginError> {
            crate::log::report_panics();
            T::discover(&config)
        }
        fn open(
            config: String,
            target: WriteTarget,
        ) -> Result<destination::exports::sluice::plugin::destination_api::Writer, PluginError>
        {
            crate::log::report_panics();
            let w = T::open(&config, target)?;
            Ok(
                destination::exports::sluice::plugin::destination_api::Writer::new(
                    WriterAdapter::<T>(RefCell::new(w)),
                ),
            )
        }
    }

    impl<T: Destination> destination::exports::sluice::plugin::destination_api::GuestWriter
        for WriterAdapter<T>
    {
        fn write(&self, input: Batch) -> Result<Vec<RowResult>, PluginError> {
            crate::log::report_panics();
            self.0.borrow_mut().write(input)
        }
    }

    impl<T: Lookup> lookup::exports::sluice::plugin::lookup_api::Guest for DestinationAdapter<T> {
        fn exists(
            config: String,
            target: WriteTarget,
            ids: Vec<Value>,
        ) -> Result<Vec<bool>, PluginError> {
            T::exists(&config, target, ids)
        }
    }
}

/// Export a [`Source`] implementation as this component's `source` world.
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        // Exports exist only in the component; a native build (tests,
        // benchmarks) uses the plugin as a plain library.
        #[cfg(target_arch = "wasm32")]
        type __SluiceSourceExport = $crate::__private::SourceAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::source::__export_source_world!(
            __SluiceSourceExport with_types_in $crate::bindings::source
        );
    };
}

/// Export an [`Estimate`] source as this component's `estimable-source`
/// world: `source` plus `estimate-api`, so `sluice plan` can show what a
/// read would scan.
#[macro_export]
macro_rules! export_estimable_source {
    ($t:ty) => {
        $crate::export_source!($t);
        #[cfg(target_arch = "wasm32")]
        type __SluiceEstimateExport = $crate::__private::SourceAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::estimate::__export_estimate_world!(
            __SluiceEstimateExport with_types_in $crate::bindings::estimate
        );
    };
}

/// Export a [`WarehouseDiff`] source as this component's
/// `warehouse-diff-source` world: `source` plus `warehouse-diff-api`, so a
/// model can say `diff: warehouse`.
#[macro_export]
macro_rules! export_warehouse_diff_source {
    ($t:ty) => {
        $crate::export_source!($t);
        #[cfg(target_arch = "wasm32")]
        type __SluiceWarehouseDiffExport = $crate::__private::SourceAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::warehouse_diff::__export_warehouse_diff_world!(
            __SluiceWarehouseDiffExport with_types_in $crate::bindings::warehouse_diff
        );
    };
}

/// Export a [`Transform`] implementation as this component's `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        // Exports exist only in the component; a native build (tests,
        // benchmarks) uses the plugin as a plain library.
        #[cfg(target_arch = "wasm32")]
        type __SluiceTransformExport = $crate::__private::TransformAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::transform::__export_transform_world!(
            __SluiceTransformExport with_types_in $crate::bindings::transform
        );
    };
}

/// Export a [`ColumnarTransform`] implementation as this component's
/// `columnar-transform` world.
#[macro_export]
macro_rules! export_columnar_transform {
    ($t:ty) => {
        // Exports exist only in the component; a native build (tests,
        // benchmarks) uses the plugin as a plain library.
        #[cfg(target_arch = "wasm32")]
        type __SluiceColumnarTransformExport = $crate::__private::ColumnarTransformAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::columnar_transform::__export_columnar_transform_world!(
            __SluiceColumnarTransformExport with_types_in $crate::bindings::columnar_transform
        );
    };
}

/// Export a [`Destination`] implementation as this component's `destination`
/// world.
#[macro_export]
macro_rules! export_destination {
    ($t:ty) => {
        // Exports exist only in the component; a native build (tests,
        // benchmarks) uses the plugin as a plain library.
        #[cfg(target_arch = "wasm32")]
        type __SluiceDestinationExport = $crate::__private::DestinationAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::destination::__export_destination_world!(
            __SluiceDestinationExport with_types_in $crate::bindings::destination
        );
    };
}

/// Export a [`Lookup`] destination as this component's
/// `verifiable-destination` world: `destination` plus `lookup-api`, so
/// `sluice verify` can check what the destination holds.
#[macro_export]
macro_rules! export_verifiable_destination {
    ($t:ty) => {
        $crate::export_destination!($t);
        #[cfg(target_arch = "wasm32")]
        type __SluiceLookupExport = $crate::__private::DestinationAdapter<$t>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::lookup::__export_lookup_world!(
            __SluiceLookupExport with_types_in $crate::bindings::lookup
        );
    };
}
