//! `POST /api/exec/NAME/FN` for plain numeric exports: JSON numbers in,
//! typed wasm values to the export, JSON out.

use http::StatusCode;
use serde_json::Value;
use shanhai_runtime::{NumType, NumValue, NumericSignature};
use smallvec::SmallVec;

use super::error::ApiError;

/// A numeric export's arguments: on the stack for the few that exports
/// take, so that parsing them allocates nothing.
pub(crate) type NumValues = SmallVec<[NumValue; 4]>;

/// Converts a JSON array of numbers to the export's parameter types.
pub(crate) fn parse_args(
    body: &[u8],
    function: &str,
    signature: &NumericSignature,
) -> Result<NumValues, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_arguments", message);
    // Numbers parse into `Value`s without allocating.
    let values: SmallVec<[Value; 4]> = if body.iter().all(u8::is_ascii_whitespace) {
        SmallVec::new()
    } else {
        serde_json::from_slice(body)
            .map_err(|err| bad(format!("body must be a JSON array of numbers: {err}")))?
    };
    if values.len() != signature.params.len() {
        return Err(bad(format!(
            "`{function}` takes {} argument(s) ({}), got {}",
            signature.params.len(),
            type_list(&signature.params),
            values.len()
        )));
    }
    values
        .iter()
        .zip(&signature.params)
        .enumerate()
        .map(|(i, (value, ty))| {
            convert(value, *ty).ok_or_else(|| {
                bad(format!(
                    "argument {i} ({value}) is not a valid {}",
                    type_name(*ty)
                ))
            })
        })
        .collect()
}

fn convert(value: &Value, ty: NumType) -> Option<NumValue> {
    let Value::Number(n) = value else {
        return None;
    };
    let integral = || -> Option<i64> {
        n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
        })
    };
    match ty {
        NumType::I32 => integral()
            .and_then(|v| {
                // Accept the unsigned range too: Go's uint32 exports are i32s.
                i32::try_from(v)
                    .ok()
                    .or_else(|| u32::try_from(v).ok().map(|u| u as i32))
            })
            .map(NumValue::I32),
        NumType::I64 => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .or_else(integral)
            .map(NumValue::I64),
        NumType::F32 => n.as_f64().map(|f| NumValue::F32(f as f32)),
        NumType::F64 => n.as_f64().map(NumValue::F64),
    }
}

/// The JSON result: a number for one result, an array for several, `null`
/// for none. Non-finite floats become `null` (JSON has no NaN).
pub(crate) fn render_results(results: &[NumValue]) -> Value {
    let one = |v: &NumValue| match *v {
        NumValue::I32(v) => Value::from(v),
        NumValue::I64(v) => Value::from(v),
        NumValue::F32(v) => {
            serde_json::Number::from_f64(f64::from(v)).map_or(Value::Null, Value::Number)
        }
        NumValue::F64(v) => serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
    };
    match results {
        [] => Value::Null,
        [single] => one(single),
        many => Value::Array(many.iter().map(one).collect()),
    }
}

fn type_name(ty: NumType) -> &'static str {
    match ty {
        NumType::I32 => "i32",
        NumType::I64 => "i64",
        NumType::F32 => "f32",
        NumType::F64 => "f64",
    }
}

fn type_list(types: &[NumType]) -> String {
    types
        .iter()
        .map(|t| type_name(*t))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(params: &[NumType]) -> NumericSignature {
        NumericSignature {
            params: params.to_vec(),
            results: vec![],
        }
    }

    #[test]
    fn converts_by_parameter_type() {
        let args = parse_args(b"[2.5, 3]", "f", &sig(&[NumType::F64, NumType::I32])).unwrap();
        assert_eq!(args[..], [NumValue::F64(2.5), NumValue::I32(3)]);
        let args = parse_args(
            b"[4.0, 4294967295]",
            "f",
            &sig(&[NumType::I64, NumType::I32]),
        )
        .unwrap();
        assert_eq!(args[..], [NumValue::I64(4), NumValue::I32(-1)]);
    }

    #[test]
    fn refuses_wrong_arity_and_types() {
        assert_eq!(
            parse_args(b"[1]", "f", &sig(&[NumType::F64, NumType::F64]))
                .unwrap_err()
                .kind,
            "bad_arguments"
        );
        assert!(parse_args(b"[1.5]", "f", &sig(&[NumType::I32])).is_err());
        assert!(parse_args(b"[\"1\"]", "f", &sig(&[NumType::F64])).is_err());
        assert!(parse_args(b"[5000000000]", "f", &sig(&[NumType::I32])).is_err());
        assert!(parse_args(b"{", "f", &sig(&[NumType::I32])).is_err());
    }

    #[test]
    fn renders_results() {
        assert_eq!(
            render_results(&[NumValue::F64(2.5 + 3.7)]).to_string(),
            "6.2"
        );
        assert_eq!(render_results(&[]).to_string(), "null");
        assert_eq!(
            render_results(&[NumValue::I32(1), NumValue::F64(f64::NAN)]).to_string(),
            "[1,null]"
        );
    }
}
