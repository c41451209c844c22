//! A session's import graph: who imports whom, and the order to reload in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Default, Debug, Clone)]
pub(crate) struct ImportGraph {
    /// importer -> modules it imports
    imports: BTreeMap<String, BTreeSet<String>>,
    /// module -> modules importing it
    importers: BTreeMap<String, BTreeSet<String>>,
}

/// Modules to reload, dependencies first, and the import cycles met on the way.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) order: Vec<String>,
    pub(crate) cycles: Vec<Vec<String>>,
}

impl ImportGraph {
    pub(crate) fn add_edge(&mut self, importer: &str, imported: &str) {
        if self
            .imports
            .get(importer)
            .is_some_and(|s| s.contains(imported))
        {
            return; // a statement run again (a reload, a function-level import)
        }
        self.imports
            .entry(importer.to_owned())
            .or_default()
            .insert(imported.to_owned());
        self.importers
            .entry(imported.to_owned())
            .or_default()
            .insert(importer.to_owned());
    }

    /// `changed` plus every module importing one of them (transitively), restricted to
    /// modules `known` accepts, in dependency order. Cycles are broken in name order
    /// and reported, never looped.
    pub(crate) fn reload_order(&self, changed: &[String], known: impl Fn(&str) -> bool) -> Plan {
        let mut selected: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = changed.iter().filter(|n| known(n)).cloned().collect();
        while let Some(name) = todo.pop() {
            if !selected.insert(name.clone()) {
                continue;
            }
            for importer in self.importers.get(&name).into_iter().flatten() {
                if known(importer) && !selected.contains(importer) {
                    todo.push(importer.clone());
                }
            }
        }
        self.order_within(&selected)
    }

    /// Tarjan's strongly connected components over the selected modules; Tarjan emits
    /// components dependencies-first, which is the reload order.
    fn order_within(&self, selected: &BTreeSet<String>) -> Plan {
        struct Walk<'a> {
            graph: &'a ImportGraph,
            selected: &'a BTreeSet<String>,
            index: HashMap<&'a str, usize>,
            low: HashMap<&'a str, usize>,
            on_stack: BTreeSet<&'a str>,
            stack: Vec<&'a str>,
            next: usize,
            plan: Plan,
        }
        impl<'a> Walk<'a> {
            fn visit(&mut self, v: &'a str) {
                self.index.insert(v, self.next);
                self.low.insert(v, self.next);
                self.next += 1;
                self.stack.push(v);
                self.on_stack.insert(v);
                let deps: Vec<&'a str> = self
                    .graph
                    .imports
                    .get(v)
                    .into_iter()
                    .flatten()
                    .filter(|d| self.selected.contains(*d))
                    .map(String::as_str)
                    .collect();
                for w in deps {
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let lw = self.low[w];
                        let lv = self.low[v];
                        self.low.insert(v, lv.min(lw));
                    } else if self.on_stack.contains(w) {
                        let iw = self.index[w];
                        let lv = self.low[v];
                        self.low.insert(v, lv.min(iw));
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        component.push(w.to_owned());
                        if w == v {
                            break;
                        }
                    }
                    component.sort();
                    if component.len() > 1 {
                        self.plan.cycles.push(component.clone());
                    }
                    self.plan.order.extend(component);
                }
            }
        }
        let mut walk = Walk {
            graph: self,
            selected,
            index: HashMap::new(),
            low: HashMap::new(),
            on_stack: BTreeSet::new(),
            stack: Vec::new(),
            next: 0,
            plan: Plan::default(),
        };
        for v in selected {
            if !walk.index.contains_key(v.as_str()) {
                walk.visit(v);
            }
        }
        walk.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> ImportGraph {
        let mut g = ImportGraph::default();
        for (a, b) in edges {
            g.add_edge(a, b);
        }
        g
    }

    #[test]
    fn dependents_follow_their_dependencies() {
        let g = graph(&[
            ("app", "ui"),
            ("ui", "core"),
            ("tools", "core"),
            ("other", "x"),
        ]);
        let plan = g.reload_order(&["core".into()], |_| true);
        assert_eq!(plan.order.first().map(String::as_str), Some("core"));
        let pos = |n: &str| plan.order.iter().position(|x| x == n).unwrap();
        assert!(pos("ui") < pos("app"));
        assert!(plan.order.contains(&"tools".to_owned()));
        assert!(!plan.order.contains(&"other".to_owned()));
        assert!(plan.cycles.is_empty());
    }

    #[test]
    fn cycles_are_reported_not_looped() {
        let g = graph(&[("a", "b"), ("b", "a"), ("c", "a")]);
        let plan = g.reload_order(&["a".into()], |_| true);
        assert_eq!(plan.cycles, vec![vec!["a".to_owned(), "b".to_owned()]]);
        assert_eq!(plan.order, ["a", "b", "c"]);
    }

    #[test]
    fn unknown_modules_are_left_out() {
        let g = graph(&[("a", "b"), ("gone", "b")]);
        let plan = g.reload_order(&["b".into()], |n| n != "gone");
        assert_eq!(plan.order, ["b", "a"]);
    }

    #[test]
    fn deep_chains_do_not_overflow() {
        let names: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
        let mut g = ImportGraph::default();
        for w in names.windows(2) {
            g.add_edge(&w[1], &w[0]);
        }
        let plan = g.reload_order(&["m0".into()], |_| true);
        assert_eq!(plan.order.len(), 2000);
        assert_eq!(plan.order[0], "m0");
    }
}
