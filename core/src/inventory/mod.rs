//! The lab inventory: schema, loading and validation with file:line errors.
