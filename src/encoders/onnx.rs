//! A minimal reader of the ONNX protobuf: only the fields an encoder import
//! needs (graph nodes, initializers, constant attributes and input shapes).
//! Hand-written wire-format decoding, so the build needs no `protoc`.
//!
//! Tensor payloads are borrowed from the file's bytes; nothing is allocated
//! by a size read from the file before the size is checked against the bytes
//! actually present.

use anyhow::{bail, Context, Result};

/// ONNX `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;

#[derive(Debug, Default)]
pub struct Graph<'a> {
    pub nodes: Vec<Node<'a>>,
    pub initializers: Vec<TensorProto<'a>>,
    pub inputs: Vec<ValueInfo>,
}

#[derive(Debug, Default)]
pub struct Node<'a> {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Attributes that hold a tensor (`Constant`'s `value`), by attribute name.
    pub tensor_attributes: Vec<(String, TensorProto<'a>)>,
}

#[derive(Debug, Default)]
pub struct TensorProto<'a> {
    pub name: String,
    pub dims: Vec<i64>,
    pub data_type: i32,
    raw_data: Option<&'a [u8]>,
    float_data: Vec<f32>,
    external: bool,
}

/// A graph input: its name and dimensions (`None` for a symbolic dimension).
#[derive(Debug, Default)]
pub struct ValueInfo {
    pub name: String,
    pub dims: Vec<Option<i64>>,
}

impl TensorProto<'_> {
    /// The dimensions as `usize`, refusing negative ones.
    pub fn shape(&self) -> Result<Vec<usize>> {
        self.dims
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .with_context(|| format!("tensor {} has dimension {d}", self.name))
            })
            .collect()
    }

    /// The values of a FLOAT tensor, after checking that the data holds exactly
    /// as many values as the dimensions say.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if self.external {
            bail!(
                "tensor {} is stored outside the .onnx file (external data), which is not supported",
                self.name
            );
        }
        if self.data_type != FLOAT {
            bail!(
                "tensor {} has ONNX data type {}, expected 1 (float32)",
                self.name,
                self.data_type
            );
        }
        let count = self
            .shape()?
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .with_context(|| format!("tensor {} has too many elements", self.name))?;
        match self.raw_data {
            Some(raw) => {
                if Some(raw.len()) != count.checked_mul(4) {
                    bail!(
                        "tensor {}: dimensions {:?} need {count} floats but raw_data holds {} bytes",
                        self.name,
                        self.dims,
                        raw.len()
                    );
                }
                Ok(raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
            None => {
                if self.float_data.len() != count {
                    bail!(
                        "tensor {}: dimensions {:?} need {count} floats but float_data holds {}",
                        self.name,
                        self.dims,
                        self.float_data.len()
                    );
                }
                Ok(self.float_data.clone())
            }
        }
    }
}

/// Parses a serialized `ModelProto` and returns its graph.
pub fn parse_model(bytes: &[u8]) -> Result<Graph<'_>> {
    let mut graph = None;
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        if number == 7 {
            graph = Some(parse_graph(value.bytes()?)?);
        }
    }
    graph.context("the ONNX model has no graph")
}

fn parse_graph(bytes: &[u8]) -> Result<Graph<'_>> {
    let mut graph = Graph::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => graph.nodes.push(parse_node(v.bytes()?)?),
            (5, v) => graph.initializers.push(parse_tensor(v.bytes()?)?),
            (11, v) => graph.inputs.push(parse_value_info(v.bytes()?)?),
            _ => {}
        }
    }
    Ok(graph)
}

fn parse_node(bytes: &[u8]) -> Result<Node<'_>> {
    let mut node = Node::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => node.inputs.push(v.string()?),
            (2, v) => node.outputs.push(v.string()?),
            (3, v) => node.name = v.string()?,
            (4, v) => node.op_type = v.string()?,
            (5, v) => {
                let (mut name, mut tensor) = (String::new(), None);
                for f in Fields::new(v.bytes()?) {
                    match f? {
                        (1, v) => name = v.string()?,
                        (5, v) => tensor = Some(parse_tensor(v.bytes()?)?),
                        _ => {}
                    }
                }
                if let Some(t) = tensor {
                    node.tensor_attributes.push((name, t));
                }
            }
            _ => {}
        }
    }
    Ok(node)
}

fn parse_tensor(bytes: &[u8]) -> Result<TensorProto<'_>> {
    let mut t = TensorProto::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(d)) => t.dims.push(d as i64),
            (1, Value::Bytes(packed)) => {
                let mut pos = 0;
                while pos < packed.len() {
                    t.dims.push(varint(packed, &mut pos)? as i64);
                }
            }
            (2, v) => t.data_type = v.varint()? as i32,
            (4, Value::Fixed32(b)) => t.float_data.push(f32::from_le_bytes(b)),
            (4, Value::Bytes(packed)) => {
                if !packed.len().is_multiple_of(4) {
                    bail!(
                        "packed float_data of {} bytes is not whole floats",
                        packed.len()
                    );
                }
                t.float_data.extend(
                    packed
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            (8, v) => t.name = v.string()?,
            (9, v) => t.raw_data = Some(v.bytes()?),
            (13, _) => t.external = true,
            (14, v) => t.external |= v.varint()? == 1,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_value_info(bytes: &[u8]) -> Result<ValueInfo> {
    let mut info = ValueInfo::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => info.name = v.string()?,
            // TypeProto.tensor_type(1) -> Tensor.shape(2) -> TensorShapeProto.dim(1)
            (2, v) => {
                for f in Fields::new(v.bytes()?) {
                    if let (1, tensor_type) = f? {
                        for f in Fields::new(tensor_type.bytes()?) {
                            if let (2, shape) = f? {
                                for f in Fields::new(shape.bytes()?) {
                                    if let (1, dim) = f? {
                                        let mut value = None;
                                        for f in Fields::new(dim.bytes()?) {
                                            if let (1, v) = f? {
                                                value = Some(v.varint()? as i64);
                                            }
                                        }
                                        info.dims.push(value);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

impl<'a> Value<'a> {
    fn bytes(self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => {
                bail!("malformed ONNX protobuf: expected a length-delimited field, found {other:?}")
            }
        }
    }

    fn string(self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn varint(self) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            other => bail!("malformed ONNX protobuf: expected a varint field, found {other:?}"),
        }
    }
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            bytes,
            pos: 0,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u64, Value<'a>)> {
        let key = varint(self.bytes, &mut self.pos)?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(varint(self.bytes, &mut self.pos)?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = varint(self.bytes, &mut self.pos)?;
                let len = usize::try_from(len).context("malformed ONNX protobuf: huge length")?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32([b[0], b[1], b[2], b[3]])
            }
            other => bail!(
                "malformed ONNX protobuf: wire type {other} at byte {}",
                self.pos
            ),
        };
        Ok((number, value))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .with_context(|| {
                format!(
                    "malformed or truncated ONNX protobuf: a field of {len} bytes at byte {} runs past the end ({} bytes)",
                    self.pos,
                    self.bytes.len()
                )
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*pos)
            .context("malformed or truncated ONNX protobuf: varint runs past the end")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("malformed ONNX protobuf: varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_reads_multi_byte_values_and_refuses_truncation() {
        let mut pos = 0;
        assert_eq!(varint(&[0xac, 0x02], &mut pos).ok(), Some(300));
        assert_eq!(pos, 2);
        let mut pos = 0;
        assert!(varint(&[0xac], &mut pos).is_err());
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_a_panic() {
        // field 7 (graph), length-delimited, claims 100 bytes but holds 2
        let bytes = [0x3a, 100, 0x0a, 0x00];
        let err = parse_model(&bytes).err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("past the end")));
    }

    #[test]
    fn tensor_data_must_match_its_dimensions() {
        // dims [2, 3] (packed), data_type 1, raw_data of 8 bytes instead of 24
        let mut bytes = vec![0x0a, 2, 2, 3, 0x10, 1, 0x4a, 8];
        bytes.extend([0u8; 8]);
        let t = parse_tensor(&bytes).map_err(|e| e.to_string());
        let err = t.and_then(|t| t.to_f32().map_err(|e| e.to_string())).err();
        assert!(err.is_some_and(|e| e.contains("need 6 floats")));
    }
}
