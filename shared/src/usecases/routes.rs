//! Which results store a job's rows go to: `user_metadata.job_group` selects a routed table
//! (`ROUTES`), so experiments never mix with production; everything else goes to the default.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ports::ResultsStore;

/// Results stores by `user_metadata.job_group` (`ROUTES`), with a default.
#[derive(Clone)]
pub struct Routes {
    default: Arc<dyn ResultsStore>,
    groups: HashMap<String, Arc<dyn ResultsStore>>,
}

impl Routes {
    /// Everything goes to `store`.
    pub fn single(store: Arc<dyn ResultsStore>) -> Self {
        Self {
            default: store,
            groups: HashMap::new(),
        }
    }

    /// `default`, plus one store per routed group.
    pub fn new(
        default: Arc<dyn ResultsStore>,
        groups: impl IntoIterator<Item = (String, Arc<dyn ResultsStore>)>,
    ) -> Self {
        Self {
            default,
            groups: groups.into_iter().collect(),
        }
    }

    /// Every store: the default first (group `None`), then each routed group's. The reconciler
    /// looks a job up in all of them, since it cannot know a batch's group beforehand.
    pub fn stores(&self) -> impl Iterator<Item = (Option<&str>, &Arc<dyn ResultsStore>)> {
        std::iter::once((None, &self.default)).chain(
            self.groups
                .iter()
                .map(|(group, store)| (Some(group.as_str()), store)),
        )
    }

    /// The store for a job group.
    pub fn for_group(&self, group: Option<&str>) -> &Arc<dyn ResultsStore> {
        group
            .and_then(|g| self.groups.get(g))
            .unwrap_or(&self.default)
    }
}
