//! The codec of an empty message: what tonic's server does with the
//! frames a client sends, without protobuf.

/// Encodes and decodes `()`, whatever the frame holds.
#[derive(Clone, Copy)]
pub struct Unit;

impl tonic::codec::Codec for Unit {
    type Encode = ();
    type Decode = ();
    type Encoder = Unit;
    type Decoder = Unit;
    fn encoder(&mut self) -> Unit {
        Unit
    }
    fn decoder(&mut self) -> Unit {
        Unit
    }
}

impl tonic::codec::Encoder for Unit {
    type Item = ();
    type Error = tonic::Status;
    fn encode(&mut self, (): (), _: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl tonic::codec::Decoder for Unit {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, _: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}
