"""Two-part int8 inner products against hand-worked codes and float64 products."""
import pytest
import torch

from vireid_plugins.association.inner_products import Int8Code, encode_int8, int8_inner_products, prepare_rhs


def test_code_hand_worked():
    # row [1.27, -0.5, 0.0031]: scale 0.01, u = [127, -50, 0.31] -> high [127, -50, 0], low round(254 * 0.31) = 79
    code = encode_int8(torch.tensor([[1.27, -0.5, 0.0031], [0.0, 0.0, 0.0]]))
    assert code.high.tolist() == [[127, -50, 0], [0, 0, 0]]
    assert code.low.tolist() == [[0, 0, 79], [0, 0, 0]]
    torch.testing.assert_close(code.scale, torch.tensor([0.01, 0.0]))
    torch.testing.assert_close(code.decode(), torch.tensor([[1.27, -0.5, 0.01 * 79 / 254], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("chunk_rows", [3, 4096])
def test_products_match_float64(chunk_rows):
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(37, 256, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(23, 256, generator=g), dim=1)
    b[5] = 0.0  # an all-zero row: scale 0, products 0
    code_a, code_b = encode_int8(a, chunk_rows=chunk_rows), encode_int8(b, chunk_rows=chunk_rows)
    # per element: |decode - x| <= max|x| / (127 * 508)
    for x, code in ((a, code_a), (b, code_b)):
        bound = x.abs().amax(1, keepdim=True) / (127 * 508) * 1.01  # + float32 rounding
        assert bool(((code.decode() - x).abs() <= bound).all())
    out = int8_inner_products(code_a, prepare_rhs(code_b), code_b.scale * 50.0)
    exact = 50.0 * (a.double() @ b.double().T)
    assert out.dtype == torch.float32 and out.shape == (37, 23)
    assert float((out.double() - exact).abs().max()) < 50.0 * 2e-5
    assert bool((out[:, 5] == 0).all())
    # a row subset of the code (as the blocks use it)
    sub = Int8Code(code_a.high[4:9], code_a.low[4:9], code_a.scale[4:9])
    torch.testing.assert_close(int8_inner_products(sub, prepare_rhs(code_b), code_b.scale * 50.0), out[4:9])


def test_validation():
    with pytest.raises(ValueError, match="finite: rows 0:2"):
        encode_int8(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        encode_int8(torch.ones(3))
