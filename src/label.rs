//! Closed sets of names: enums each of whose variants has one fixed snake_case name, at once
//! its value on the wire (where it has one) and its metric label value. A set is declared once,
//! with [`labels!`], so that every variant is in its `ALL` by construction: the metrics create
//! one series per member of `ALL` and find a variant's series by its position, so a new
//! variant cannot be counted without its series existing, and no lookup can miss.

/// An enum whose variants are the values of one metric label.
pub(crate) trait Label: Copy + 'static {
    /// Every variant; `ALL[v.index()] == v`.
    const ALL: &'static [Self];
    /// The label value.
    fn name(self) -> &'static str;
    /// The position of the variant in `ALL`.
    fn index(self) -> usize;
}

/// Declares a fieldless enum whose variants each carry their name: `Variant = "name",`.
/// Generates `ALL` (declaration order), `as_str`, [`Label`] and a `Serialize` that writes the
/// name, so that the wire and the metrics spell a value from the same place.
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's name, on the wire and as a metric label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl $crate::label::Label for $name {
            const ALL: &'static [Self] = $name::ALL;

            fn name(self) -> &'static str {
                self.as_str()
            }

            fn index(self) -> usize {
                // Fieldless and without explicit discriminants: the declaration order.
                self as usize
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use labels;

/// Whether `ALL` and `index` agree for every value of `L` (each set's tests call it).
#[cfg(test)]
pub(crate) fn is_consistent<L: Label + PartialEq>() -> bool {
    L::ALL
        .iter()
        .enumerate()
        .all(|(i, label)| label.index() == i && L::ALL[i] == *label)
}
