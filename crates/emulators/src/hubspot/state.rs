//! What the HubSpot emulator keeps beside the live records: archived records
//! (HubSpot archives rather than deletes, and `archived=true` reads them back),
//! archived properties, and associations between records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::schema::FieldSpec;
use crate::store::Record;

/// A record that was archived, and when.
#[derive(Debug, Clone)]
pub(crate) struct ArchivedRecord {
    pub record: Record,
    pub archived_at: DateTime<Utc>,
}

/// A property that was archived, and when.
pub(crate) type ArchivedProperty = (FieldSpec, DateTime<Utc>);

/// One end of an association: an object type (canonical name) and a record id.
pub(crate) type End = (String, String);

/// A directed association type: HubSpot's `associationCategory` and `associationTypeId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AssociationType {
    pub user_defined: bool,
    pub type_id: u32,
}

impl AssociationType {
    pub fn category(self) -> &'static str {
        if self.user_defined {
            "USER_DEFINED"
        } else {
            "HUBSPOT_DEFINED"
        }
    }
}

/// Directed association edges; every edge is stored with its reverse, so an
/// association reads the same from either record (as in HubSpot).
#[derive(Debug, Default)]
pub(crate) struct Associations {
    edges: BTreeMap<End, BTreeMap<End, BTreeSet<AssociationType>>>,
}

impl Associations {
    /// Adds `from -> to` of type `kind`, and `to -> from` of type `reverse`.
    pub fn add(&mut self, from: &End, to: &End, kind: AssociationType, reverse: AssociationType) {
        self.edge(from, to).insert(kind);
        self.edge(to, from).insert(reverse);
    }

    fn edge(&mut self, from: &End, to: &End) -> &mut BTreeSet<AssociationType> {
        self.edges
            .entry(from.clone())
            .or_default()
            .entry(to.clone())
            .or_default()
    }

    /// Removes every association between `a` and `b`, both directions.
    pub fn remove_pair(&mut self, a: &End, b: &End) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(targets) = self.edges.get_mut(x) {
                targets.remove(y);
            }
        }
    }

    /// Removes every association of a record (it was archived).
    pub fn remove_record(&mut self, end: &End) {
        let Some(targets) = self.edges.remove(end) else {
            return;
        };
        for other in targets.keys() {
            if let Some(back) = self.edges.get_mut(other) {
                back.remove(end);
            }
        }
    }

    /// The records of `to_object` associated with `from`, in id order, with their types.
    pub fn targets(&self, from: &End, to_object: &str) -> Vec<(String, Vec<AssociationType>)> {
        let Some(targets) = self.edges.get(from) else {
            return Vec::new();
        };
        let mut found: Vec<(String, Vec<AssociationType>)> = targets
            .iter()
            .filter(|((object, _), kinds)| object == to_object && !kinds.is_empty())
            .map(|((_, id), kinds)| (id.clone(), kinds.iter().copied().collect()))
            .collect();
        found.sort_by_key(|(id, _)| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
        found
    }
}

/// The HubSpot emulator's state beside the shared record store.
#[derive(Debug, Default)]
pub(crate) struct HubSpotState {
    /// Archived records per canonical object name, keyed by numeric id.
    pub archived: Mutex<HashMap<String, BTreeMap<u64, ArchivedRecord>>>,
    /// Archived properties per canonical object name.
    pub archived_properties: Mutex<HashMap<String, Vec<ArchivedProperty>>>,
    /// Property descriptions and group names set through the API.
    pub property_text: Mutex<HashMap<(String, String), PropertyText>>,
    pub associations: Mutex<Associations>,
}

/// Property metadata the shared field model has no place for.
#[derive(Debug, Clone, Default)]
pub(crate) struct PropertyText {
    /// Created through the API (or on a custom object), so archivable.
    pub user_defined: bool,
    pub description: Option<String>,
    pub group_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(object: &str, id: &str) -> End {
        (object.to_owned(), id.to_owned())
    }

    #[test]
    fn associations_read_from_both_ends_and_go_with_an_archived_record() {
        let mut a = Associations::default();
        let forward = AssociationType {
            user_defined: false,
            type_id: 279,
        };
        let reverse = AssociationType {
            user_defined: false,
            type_id: 280,
        };
        a.add(
            &end("contacts", "10"),
            &end("companies", "2"),
            forward,
            reverse,
        );
        a.add(
            &end("contacts", "9"),
            &end("companies", "2"),
            forward,
            reverse,
        );
        assert_eq!(
            a.targets(&end("contacts", "10"), "companies"),
            vec![("2".to_owned(), vec![forward])]
        );
        let back: Vec<String> = a
            .targets(&end("companies", "2"), "contacts")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(back, ["9", "10"], "numeric id order");
        a.remove_record(&end("contacts", "9"));
        assert_eq!(a.targets(&end("companies", "2"), "contacts").len(), 1);
        a.remove_pair(&end("companies", "2"), &end("contacts", "10"));
        assert!(a.targets(&end("contacts", "10"), "companies").is_empty());
    }
}
